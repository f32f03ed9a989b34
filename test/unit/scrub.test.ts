import { describe, expect, it } from 'vitest';
import { Secret } from '../../src/config/secret.js';
import { compileMask } from '../../src/masking/mask.js';
import {
  maskText,
  SECRET_MARK,
  scrubMessage,
  sentSecrets,
  unescapeJsonText,
  upstreamDetail,
} from '../../src/masking/scrub.js';

const KEY = 'sk-test-0123456789abcdef';
const JWT = 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLW9mLXRoZS1jcmVkZW50aWFs';
const secrets = () =>
  sentSecrets(
    { secret: { header: 'x-api-key', value: new Secret(KEY) } },
    { headers: { authorization: `Bearer ${JWT}` } },
  );

describe('the scrubber for secrets gitgate sent', () => {
  it('finds them as sent, bare, signature alone, base64 at any offset, base64url, percent-encoded', () => {
    const s = secrets();
    const sig = JWT.split('.')[2]!;
    for (const prefix of ['', 'a', 'ab', 'abc']) {
      const dump = Buffer.from(`${prefix}x-api-key: ${KEY}`).toString('base64');
      expect(s.text(dump)).toContain(SECRET_MARK);
      expect(s.text(Buffer.from(`${prefix}${JWT}`).toString('base64url'))).toContain(SECRET_MARK);
    }
    expect(s.text(`k=${KEY} t=${JWT} sig=${sig} u=${encodeURIComponent(`Bearer ${JWT}`)}`)).toBe(
      `k=${SECRET_MARK} t=${SECRET_MARK} sig=${SECRET_MARK} u=${SECRET_MARK}`,
    );
    expect(s.text('nothing here')).toBe('nothing here');
  });

  it('finds them upper- or lower-cased, and as hex of their bytes', () => {
    const s = secrets();
    const hex = Buffer.from(KEY).toString('hex');
    expect(s.text(`u=${KEY.toUpperCase()} h=${hex} H=${hex.toUpperCase()} j=${JWT.toLowerCase()}`)).toBe(
      `u=${SECRET_MARK} h=${SECRET_MARK} H=${SECRET_MARK} j=${SECRET_MARK}`,
    );
  });

  it('a password in the upstream URL is a secret sent too (as HTTP Basic)', () => {
    const s = sentSecrets({ url: 'https://svc:p%40ss-w0rd-123@upstream.example/mcp' });
    const basic = Buffer.from('svc:p@ss-w0rd-123').toString('base64');
    expect(s.text(`Authorization: Basic ${basic} (password p@ss-w0rd-123)`)).toBe(
      `Authorization: Basic ${SECRET_MARK} (password ${SECRET_MARK})`,
    );
  });

  it('scrubs every string and key of a message in place, however deep', () => {
    let deep: unknown = { leaf: `x ${KEY}` };
    for (let i = 0; i < 50_000; i++) deep = [deep];
    const m = { jsonrpc: '2.0', id: 1, result: { [KEY]: 1, list: [JWT, 'ok'], deep } };
    expect(scrubMessage(m, secrets())).toBe(3);
    expect(JSON.stringify(m.result.list)).toBe(JSON.stringify([SECRET_MARK, 'ok']));
    expect(Object.keys(m.result)).toContain(SECRET_MARK);
    let node: unknown = m.result.deep;
    while (Array.isArray(node)) node = node[0];
    expect(node).toEqual({ leaf: `x ${SECRET_MARK}` });
  });

  it('finds the same after short texts as before them (forms are derived when first needed), for every copy', () => {
    const s = secrets();
    // Shorter than any secret: nothing to derive, nothing changed.
    expect(s.text('ok')).toBe('ok');
    expect(scrubMessage({ a: ['x', 'y'], b: 'z' }, s)).toBe(0);
    const b64 = Buffer.from(`a${JWT}`).toString('base64');
    const out = s.text(`t=${b64} k=${KEY.toUpperCase()}`);
    expect(out).toMatch(/^t=\S{0,4}\[redacted:secret\]\S{0,4} k=\[redacted:secret\]$/);
    // Another call's scrubber for the same upstream starts from its static secret, not from this call's token.
    const other = sentSecrets({ secret: { header: 'x-api-key', value: new Secret(KEY) } });
    expect(other.text(`${KEY} ${JWT}`)).toBe(`${SECRET_MARK} ${JWT}`);
  });

  it('an upstream whose URL or secret changed is scrubbed for the new ones', () => {
    const cfg: { url: string; secret?: { header: string; value: Secret } } = {
      url: 'https://svc:first-password-1@upstream.example/mcp',
    };
    expect(sentSecrets(cfg).text('first-password-1')).toBe(SECRET_MARK);
    cfg.url = 'https://svc:second-password-2@upstream.example/mcp';
    cfg.secret = { header: 'x-api-key', value: new Secret(KEY) };
    const s = sentSecrets(cfg);
    expect(s.text('second-password-2')).toBe(SECRET_MARK);
    expect(s.text(KEY)).toBe(SECRET_MARK);
    expect(s.empty).toBe(false);
    expect(sentSecrets({}).empty).toBe(true);
  });

  it('upstream text for an error: escapes decoded, secrets and any credential removed, masked, then cut', () => {
    const escaped = [...KEY].map((c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`).join('');
    expect(unescapeJsonText(`a\\"b\\n${escaped}`)).toBe(`a"b\n${KEY}`);
    const other = 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl';
    const mask = (t: string) => maskText(t, compileMask([{ path: '$.result', detectors: ['email'] }]));
    const clean = `key ${SECRET_MARK} other [redacted:jwt] mail [redacted:email] ${'z'.repeat(300)}`;
    expect(upstreamDetail(`key ${escaped} other ${other} mail a@b.io ${'z'.repeat(300)}`, secrets(), 80, mask)).toBe(
      `${clean.slice(0, 80)}…`,
    );
    expect(maskText('anything', compileMask([{ path: '$.result.x', redact: true }]))).toBe('[redacted]');
  });
});
