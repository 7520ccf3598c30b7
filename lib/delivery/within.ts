/**
 * Whether `work` settles within `ms` (a rejection counts as settled). The timer does not keep the
 * process alive and is cleared once `work` settles.
 */
export async function within (work: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined
  const settled = await Promise.race([
    work.then(() => true, () => true),
    new Promise<boolean>((resolve) => { timer = setTimeout(() => resolve(false), ms); timer.unref() })
  ])
  clearTimeout(timer)
  return settled
}
