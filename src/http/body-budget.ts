import type { ServerResponse } from 'node:http';
import { type Readable, Transform } from 'node:stream';
import { GatewayError } from '../errors.js';

/**
 * One budget for every request body being read at once (server.maxBufferedBodyBytes): each body is
 * held whole until its request is answered, so past the budget a body is refused (503 SERVER_BUSY,
 * the connection closed) rather than buffered. Bytes count as they arrive and go back when the
 * response closes.
 */
export class BodyBudget {
  #held = 0;
  constructor(readonly max: number) {}

  get held(): number {
    return this.#held;
  }

  /** The body, counted against the budget while `res` is open. */
  track(payload: Readable, res: ServerResponse): Readable {
    let mine = 0;
    res.once('close', () => {
      this.#held -= mine;
      mine = 0;
    });
    const counted = new Transform({
      transform: (chunk: Buffer, _enc, done) => {
        if (this.#held + chunk.length > this.max) {
          res.setHeader('connection', 'close');
          done(
            new GatewayError(
              'SERVER_BUSY',
              `Server busy: the request bodies being read hold ${this.max} bytes (server.maxBufferedBodyBytes); try again`,
              { headers: { 'retry-after': '1' } },
            ),
          );
          return;
        }
        this.#held += chunk.length;
        mine += chunk.length;
        done(null, chunk);
      },
    });
    payload.on('error', (err) => counted.destroy(err));
    return payload.pipe(counted);
  }
}
