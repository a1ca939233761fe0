// The load client's reading of one HTTP/1.1 response on a raw socket (bench/node/load.mjs's
// `net` client): the status, then a chunked (or content-length) body whose SSE events are
// counted as blank lines without parsing JSON, and the last bytes kept to find the terminator.
// Reads may be cut anywhere: a head, a chunk-size line or a blank line split across two reads
// is joined (a copy only then, never per event).

const EMPTY = Buffer.alloc(0);
const TAIL = 256; // bytes of the body kept: enough for the last event's terminator

// Blank lines in one read of the body, `previous` being the body's byte before it.
export function countEvents(previous, part) {
  let count = previous === 10 && part[0] === 10 ? 1 : 0;
  let at = part.indexOf("\n\n");
  while (at >= 0) {
    count += 1;
    at = part.indexOf("\n\n", at + 2);
  }
  return count;
}

export class ResponseReader {
  constructor() {
    this.reset();
  }

  reset() {
    this.pending = null; // bytes of a head or a chunk-size line not yet whole
    this.inBody = false;
    this.status = 0;
    this.chunked = true;
    this.remaining = 0; // body bytes still due, without chunked encoding
    this.chunkLeft = 0; // bytes still due in the current chunk, its CRLF included
    this.events = 0;
    this.last = 0;
    this.tail = EMPTY;
    this.firstAt = 0; // performance.now() at the first body bytes
    this.done = false;
    this.malformed = false;
  }

  feed(data) {
    if (this.pending !== null) {
      data = Buffer.concat([this.pending, data]);
      this.pending = null;
    }
    if (!this.inBody) {
      data = this.head(data);
      if (data === null || this.done) return;
    }
    if (this.chunked) this.chunks(data);
    else this.plain(data);
  }

  head(data) {
    const end = data.indexOf("\r\n\r\n");
    if (end < 0) {
      this.pending = data;
      return null;
    }
    this.status = Number(data.toString("latin1", 9, 12));
    const length = /\r\ncontent-length:[ \t]*(\d+)/i.exec(data.toString("latin1", 0, end));
    this.chunked = length === null;
    this.remaining = length === null ? 0 : Number(length[1]);
    this.inBody = true;
    this.done = length !== null && this.remaining === 0;
    return data.subarray(end + 4);
  }

  plain(data) {
    const part = data.subarray(0, this.remaining);
    this.remaining -= part.length;
    if (part.length) this.payload(part);
    this.done = this.remaining === 0;
  }

  chunks(data) {
    let at = 0;
    while (at < data.length) {
      if (this.chunkLeft === 0) {
        const lineEnd = data.indexOf("\r\n", at);
        if (lineEnd < 0) {
          this.pending = data.subarray(at);
          return;
        }
        const size = parseInt(data.toString("latin1", at, lineEnd), 16);
        if (Number.isNaN(size)) {
          this.malformed = this.done = true;
          return;
        }
        if (size === 0) {
          // The last chunk; its empty line ends the body (no trailers are sent here).
          if (data.length < lineEnd + 4) this.pending = data.subarray(at);
          else this.done = true;
          return;
        }
        this.chunkLeft = size + 2;
        at = lineEnd + 2;
        continue;
      }
      const take = Math.min(this.chunkLeft, data.length - at);
      const payloadEnd = at + Math.max(0, Math.min(take, this.chunkLeft - 2));
      if (payloadEnd > at) this.payload(data.subarray(at, payloadEnd));
      this.chunkLeft -= take;
      at += take;
    }
  }

  payload(part) {
    if (this.firstAt === 0) this.firstAt = performance.now();
    this.events += countEvents(this.last, part);
    this.last = part[part.length - 1];
    this.tail =
      part.length >= TAIL ? part : Buffer.concat([this.tail, part]).subarray(-TAIL);
  }
}
