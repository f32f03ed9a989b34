import type { JsonRpcMessage } from './jsonrpc.js';

/** Events one session keeps for a client that reconnects with Last-Event-ID, all its streams together. */
export const REPLAY_MAX_EVENTS = 256;
/** …and their bytes (as JSON); past either, the oldest go first. */
export const REPLAY_MAX_BYTES = 1 << 20;

interface Kept {
  readonly stream: string;
  readonly kind: 'get' | 'post';
  readonly seq: number;
  readonly message: JsonRpcMessage;
  readonly bytes: number;
}

/** One stream of a session as gitgate writes it: each event gets an id `<stream>.<seq>`, and is kept. */
export interface ReplayStream {
  readonly key: string;
  /** Keep a message about to be written; its event id. */
  record(message: JsonRpcMessage): string;
}

/**
 * What gitgate wrote on a session's SSE streams, bounded (REPLAY_MAX_EVENTS, REPLAY_MAX_BYTES): a
 * client whose connection dropped reconnects with `Last-Event-ID` and gets what followed on that stream.
 * Ids name the stream and a position; one that does not parse or names nothing kept replays nothing.
 */
export class ReplayBuffer {
  readonly #kept: Kept[] = [];
  #bytes = 0;
  #streams = 0;

  /** A new stream: a POST's answer stream, or a GET stream. */
  stream(kind: 'get' | 'post'): ReplayStream {
    const key = `s${++this.#streams}`;
    let seq = 0;
    return {
      key,
      record: (message) => {
        const bytes = Buffer.byteLength(JSON.stringify(message));
        this.#kept.push({ stream: key, kind, seq: ++seq, message: structuredClone(message), bytes });
        this.#bytes += bytes;
        while (this.#kept.length > REPLAY_MAX_EVENTS || this.#bytes > REPLAY_MAX_BYTES) {
          const old = this.#kept.shift();
          if (old === undefined) break;
          this.#bytes -= old.bytes;
        }
        return `${key}.${seq}`;
      },
    };
  }

  /** The stream a Last-Event-ID names and what this session kept of it after that event (oldest first). */
  after(lastEventId: string): { kind: 'get' | 'post'; messages: JsonRpcMessage[] } | undefined {
    const m = /^(s\d{1,9})\.(\d{1,9})$/.exec(lastEventId);
    if (!m) return undefined;
    const stream = m[1]!;
    const seq = Number(m[2]);
    const first = this.#kept.find((k) => k.stream === stream);
    if (first === undefined) return undefined;
    const messages = this.#kept
      .filter((k) => k.stream === stream && k.seq > seq)
      .map((k) => structuredClone(k.message));
    return { kind: first.kind, messages };
  }
}
