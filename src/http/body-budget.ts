import type { ServerResponse } from 'node:http';
import { type Readable, Transform } from 'node:stream';
import { ByteBudget } from '../byte-budget.js';
import { GatewayError } from '../errors.js';

function busy(why: string): GatewayError {
  return new GatewayError('SERVER_BUSY', `Server busy: ${why}; try again`, { headers: { 'retry-after': '1' } });
}

/**
 * One budget for the request bodies being read at once: each body is held whole until its request is
 * answered, so past the budget a body is refused (503 SERVER_BUSY, the connection closed) rather than
 * buffered. No one client address may hold more than `perClient` of it, so one client cannot take it
 * all. A body counts from its Content-Length before it is read (a chunked one as it arrives), and goes back
 * when the response closes.
 */
export class BodyBudget {
  readonly #full: () => GatewayError;
  readonly #all: ByteBudget;
  readonly #byClient = new Map<string, number>();

  constructor(
    max: number,
    readonly perClient: number = max,
  ) {
    this.#full = () => busy(`the request bodies being read hold ${max} bytes (server.maxBufferedBodyBytes)`);
    this.#all = new ByteBudget(max, this.#full);
  }

  /**
   * The body from `client` (its address), counted against the budget while `res` is open. A body of a
   * known length (`length`, its Content-Length, which the server holds it to) is counted whole at once,
   * before a byte is read; a chunked one as it arrives.
   */
  track(payload: Readable, res: ServerResponse, client: string, length?: number): Readable {
    let mine = 0;
    res.once('close', () => {
      this.#all.release(mine);
      const left = (this.#byClient.get(client) ?? mine) - mine;
      if (left <= 0) this.#byClient.delete(client);
      else this.#byClient.set(client, left);
      mine = 0;
    });
    /** Count `n` more bytes of this body, or say why they do not fit. */
    const take = (n: number): GatewayError | undefined => {
      const theirs = this.#byClient.get(client) ?? 0;
      const refused =
        theirs + n > this.perClient
          ? busy(
              `this client address's bodies being read hold ${this.perClient} bytes, its share of server.maxBufferedBodyBytes`,
            )
          : this.#all.tryReserve(n)
            ? undefined
            : this.#full();
      if (refused !== undefined) {
        res.setHeader('connection', 'close');
        return refused;
      }
      this.#byClient.set(client, theirs + n);
      mine += n;
      return undefined;
    };
    if (length !== undefined) {
      const refused = take(length);
      if (refused !== undefined) throw refused;
      return payload;
    }
    const counted = new Transform({
      transform: (chunk: Buffer, _enc, done) => {
        const refused = take(chunk.length);
        if (refused !== undefined) done(refused);
        else done(null, chunk);
      },
    });
    payload.on('error', (err) => counted.destroy(err));
    return payload.pipe(counted);
  }
}
