'use strict'

module.exports = require('neostandard')({
  ts: true,
  ignores: ['dist/**', 'dist-check/**', 'coverage/**', '.tap/**', 'types/**/*.test-d.ts']
})
