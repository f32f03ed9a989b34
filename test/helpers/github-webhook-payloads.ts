import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

type Json = Record<string, unknown>;

/**
 * Webhook bodies shaped like GitHub's: a real example from
 * @octokit/webhooks-examples, patched to name this repository, pull request and actor.
 */
export function examplePayload(name: 'pull_request' | 'pull_request_review', action: string): Json {
  const all = require('@octokit/webhooks-examples') as { name: string; examples: Json[] }[];
  const examples = all.find((e) => e.name === name)!.examples;
  // pull_request.edited has no example in the package: it is the opened shape with another action and `changes`.
  const ex = examples.find((x) => x.action === action) ?? examples.find((x) => x.action === 'opened')!;
  return { ...structuredClone(ex), action };
}

export interface PayloadPull {
  readonly number: number;
  readonly state: 'open' | 'closed';
  readonly title: string;
  readonly body: string;
  readonly head: { readonly ref: string; readonly sha: string };
  readonly base: { readonly ref: string };
  readonly merged: boolean;
  readonly merged_by: string | null;
}

/** Point a payload at `owner/repo`, pull request `p` (as it is now), sent by `sender`. */
export function patchPayload(
  payload: Json,
  repo: { owner: string; name: string },
  p: PayloadPull,
  sender: string,
): Json {
  const pull = payload.pull_request as Json;
  Object.assign(pull, { number: p.number, state: p.state, title: p.title, body: p.body, merged: p.merged });
  Object.assign(pull.head as Json, { ref: p.head.ref, sha: p.head.sha });
  Object.assign(pull.base as Json, { ref: p.base.ref });
  pull.merged_by = p.merged_by === null ? null : { ...((pull.user as Json | undefined) ?? {}), login: p.merged_by };
  const repository = payload.repository as Json;
  Object.assign(repository, { name: repo.name, full_name: `${repo.owner}/${repo.name}` });
  (repository.owner as Json).login = repo.owner;
  for (const side of [pull.head, pull.base] as Json[]) {
    const r = side.repo as Json | null | undefined;
    if (r) Object.assign(r, { name: repo.name, full_name: `${repo.owner}/${repo.name}` });
  }
  (payload.sender as Json).login = sender;
  return payload;
}
