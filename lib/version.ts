export const PLUGIN_NAME = 'fastify-wechat-push'
