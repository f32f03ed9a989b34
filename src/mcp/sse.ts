/** Server-Sent Events: an incremental parser and an encoder. */

export interface SseEvent {
  readonly event: string;
  readonly data: string;
  readonly id?: string;
}

export class SseParser {
  #buf = '';
  #data: string[] = [];
  #event = '';
  #id: string | undefined;
  readonly #decoder = new TextDecoder();

  /** Feed a chunk; returns the events it completed. */
  push(chunk: Uint8Array | string): SseEvent[] {
    this.#buf += typeof chunk === 'string' ? chunk : this.#decoder.decode(chunk, { stream: true });
    const out: SseEvent[] = [];
    let nl: number;
    while ((nl = this.#buf.search(/\r\n|\r|\n/)) >= 0) {
      const line = this.#buf.slice(0, nl);
      const sepLen = this.#buf.startsWith('\r\n', nl) ? 2 : 1;
      this.#buf = this.#buf.slice(nl + sepLen);
      if (line === '') {
        if (this.#data.length > 0) {
          out.push({ event: this.#event || 'message', data: this.#data.join('\n'), ...(this.#id !== undefined ? { id: this.#id } : {}) });
        }
        this.#data = [];
        this.#event = '';
        continue;
      }
      if (line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? '' : line.slice(colon + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      if (field === 'data') this.#data.push(value);
      else if (field === 'event') this.#event = value;
      else if (field === 'id') this.#id = value;
    }
    return out;
  }
}

export function encodeSse(data: unknown, id?: string): string {
  const lines = JSON.stringify(data).split('\n');
  return `event: message\n${id !== undefined ? `id: ${id}\n` : ''}${lines.map((l) => `data: ${l}`).join('\n')}\n\n`;
}
