import type { ServerResponse } from 'node:http';
import { type Readable, Transform } from 'node:stream';
import { GatewayError } from '../errors.js';

/**
 * One budget for the request bodies being read at once: each body is held whole until its request is
 * answered, so past the budget a body is refused (503 SERVER_BUSY, the connection closed) rather than
 * buffered. No one client address may hold more than `perClient` of it, so one client cannot take it
 * all. Bytes count as they arrive and go back when the response closes.
 */
export class BodyBudget {
  #held = 0;
  readonly #byClient = new Map<string, number>();

  constructor(
    readonly max: number,
    readonly perClient: number = max,
  ) {}

  get held(): number {
    return this.#held;
  }

  /** The body from `client` (its address), counted against the budget while `res` is open. */
  track(payload: Readable, res: ServerResponse, client: string): Readable {
    let mine = 0;
    res.once('close', () => {
      this.#held -= mine;
      const left = (this.#byClient.get(client) ?? mine) - mine;
      if (left <= 0) this.#byClient.delete(client);
      else this.#byClient.set(client, left);
      mine = 0;
    });
    const counted = new Transform({
      transform: (chunk: Buffer, _enc, done) => {
        const theirs = this.#byClient.get(client) ?? 0;
        if (this.#held + chunk.length > this.max || theirs + chunk.length > this.perClient) {
          res.setHeader('connection', 'close');
          done(
            new GatewayError(
              'SERVER_BUSY',
              this.#held + chunk.length > this.max
                ? `Server busy: the request bodies being read hold ${this.max} bytes (server.maxBufferedBodyBytes); try again`
                : `Server busy: this client address's bodies being read hold ${this.perClient} bytes, its share of server.maxBufferedBodyBytes; try again`,
              { headers: { 'retry-after': '1' } },
            ),
          );
          return;
        }
        this.#held += chunk.length;
        this.#byClient.set(client, theirs + chunk.length);
        mine += chunk.length;
        done(null, chunk);
      },
    });
    payload.on('error', (err) => counted.destroy(err));
    return payload.pipe(counted);
  }
}
