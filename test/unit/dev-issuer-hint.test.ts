import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { validateConfig } from '../../src/config/load.js';
import { configuredVerifier } from '../../src/identity/configured-verifier.js';

async function devConfig() {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'gitgate-data-'));
  return validateConfig(
    {
      dataDir,
      identity: { mode: 'dev' },
      policy: { dir: dataDir },
      upstreams: { demo: { url: 'http://127.0.0.1:1/mcp' } },
    },
    {},
    dataDir,
    'test',
  );
}

describe('dev mode: a token from another data dir', () => {
  it('says it was not issued by this gateway dev issuer, names the data dir and how to mint one', async () => {
    const [a, b] = [await devConfig(), await devConfig()];
    const minted = await (await configuredVerifier(a)).devIssuer!.mint({ sub: 'alice', audience: a.identity.audience });
    const { verifier, devIssuer } = await configuredVerifier(b);
    await expect(verifier.verify(minted)).rejects.toMatchObject({
      code: 'AUTH_INVALID',
      message: expect.stringContaining(
        `the token was not issued by this gateway's dev issuer (data dir ${b.dataDir}); mint one with \`gitgate token --data-dir ${b.dataDir} --sub <id>\``,
      ),
    });
    // Its own tokens still verify.
    await expect(
      verifier.verify(await devIssuer!.mint({ sub: 'bob', audience: b.identity.audience })),
    ).resolves.toMatchObject({ sub: 'bob' });
  });
});
