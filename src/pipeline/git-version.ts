import { run } from '../process/index.js';

export interface GitVersion {
  /** From `git describe --tags`; `0.0.0-dev+<sha>` when there is no tag, `0.0.0-unknown` outside Git. */
  version: string;
  commit: string | undefined;
  dirty: boolean;
  /** Committer date of HEAD, seconds since 1970 (`git log -1 --format=%ct`); undefined outside Git. */
  commitEpochSeconds?: number;
}

/** Image versions come from Git tags of the repository that holds the build definition. */
export async function describeGitVersion(dir: string): Promise<GitVersion> {
  const git = async (args: string[]): Promise<string | undefined> => {
    const result = await run('git', ['-C', dir, ...args], { allowFailure: true, timeoutMs: 10_000 }).catch(() => undefined);
    return result !== undefined && result.exitCode === 0 ? result.stdout.trim() : undefined;
  };
  const commit = await git(['rev-parse', 'HEAD']);
  if (commit === undefined) return { version: '0.0.0-unknown', commit: undefined, dirty: false };
  const status = await git(['status', '--porcelain', '--untracked-files=no']);
  const dirty = status !== undefined && status !== '';
  const described = await git(['describe', '--tags', '--match', 'v[0-9]*']);
  const base = described ?? `0.0.0-dev+${commit.slice(0, 12)}`;
  const epoch = Number(await git(['log', '-1', '--format=%ct', 'HEAD']));
  return { version: dirty ? `${base}-dirty` : base, commit, dirty, ...(Number.isInteger(epoch) && epoch > 0 ? { commitEpochSeconds: epoch } : {}) };
}
