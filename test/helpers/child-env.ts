/**
 * The environment for a child process whose coverage must stay out of tap's report.
 *
 * tap records coverage with @tapjs/processinfo, which it puts into every child process through
 * NODE_OPTIONS, whatever the child's env says about NODE_V8_COVERAGE (which tap does not use); the one
 * switch it reads is `_TAPJS_PROCESSINFO_COVERAGE_` ('0' turns it off in that process).
 *
 * Why a child must be left out: one that runs lib/ through another loader (tsx, for the fleet test's
 * instances) has other line maps for the same files. c8 merges every process's V8 counts per file but
 * keeps one process's line map for it (the last coverage file it reads, in file-name order, i.e. at
 * random), so such a child scrambled the whole report now and then: 62 % instead of 95 % in a CI run
 * with every test passing.
 */
export function withoutCoverage (env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const { NODE_V8_COVERAGE: _v8, ...rest } = env
  return { ...rest, _TAPJS_PROCESSINFO_COVERAGE_: '0' }
}
