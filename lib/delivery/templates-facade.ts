import type { FastifyBaseLogger } from 'fastify'
import type {
  AddTemplateInput, PrivateTemplate, PublicTemplateKeyword, PublicTemplateTitle, PublicTitlesQuery, TemplateApi, TemplateCategory
} from '../api/templates.js'
import { checkListOptions } from '../api/template-inputs.js'
import type { TemplateCatalog } from './templates-catalog.js'

/** `fastify.wechat.templates`: template management (WECHAT.md §4) and the cached list. */
export interface WechatTemplates {
  /** the account's private templates: the shared cached list (loaded on first use), or fresh from WeChat with `refresh: true` */
  list (options?: { refresh?: boolean }): Promise<PrivateTemplate[]>
  /** the account's categories (`getcategory`), whose ids `publicTitles` takes */
  categories (): Promise<TemplateCategory[]>
  /** titles of the public template library in some categories (`getpubtemplatetitles`; limit 1..30) */
  publicTitles (query: PublicTitlesQuery): Promise<{ count: number, data: PublicTemplateTitle[] }>
  /** the keywords of a public title (`getpubtemplatekeywords`); `rule` is each keyword's type */
  publicKeywords (tid: number | string): Promise<{ count: number, data: PublicTemplateKeyword[] }>
  /** select a public title into the account (`addtemplate`); the cached list is refreshed after it */
  add (input: AddTemplateInput): Promise<{ priTmplId: string }>
  /** delete a private template (`deltemplate`); the cached list is refreshed after it */
  remove (priTmplId: string): Promise<void>
  /** fetch the list from WeChat now and share it (what the scheduled job does when the list is due) */
  refresh (): Promise<void>
}

/** The decorator object; without a catalog (`templates: false`) every call goes to WeChat. */
export function templatesFacade (api: TemplateApi, catalog: TemplateCatalog | null, log: FastifyBaseLogger): WechatTemplates {
  const changed = async (): Promise<void> => {
    // The change is done; a failed refresh only delays when validation sees it (an unknown id refreshes again).
    await catalog?.refresh().catch((err: Error) => { log.warn({ reason: err.message }, 'wechat: could not refresh the template list after a change') })
  }
  return {
    list: async (options) => {
      const refresh = checkListOptions(options)
      return catalog === null ? api.list() : catalog.list(refresh)
    },
    categories: () => api.categories(),
    publicTitles: (query) => api.publicTitles(query),
    publicKeywords: (tid) => api.publicKeywords(tid),
    add: async (input) => {
      const added = await api.add(input)
      await changed()
      return added
    },
    remove: async (priTmplId) => {
      await api.remove(priTmplId)
      await changed()
    },
    refresh: async () => { await catalog?.refresh() }
  }
}
