import { describe, expect, test } from "bun:test";
import { ReadCache, read_cache_entry_overhead_bytes, read_cache_serves_max } from "./read_cache.ts";
import { executeRead, executeWrite } from "./execute.ts";
import { ObjectStore, type ObjectEntry } from "./object_store.ts";
import { Operation, Result, encodeKeyRequest, object_info_size, readObjectInfo } from "./operations.ts";
import { checksum, checksumOfBody } from "../util/checksum.ts";
import { finalize, Header } from "../net/codec.ts";

const te = new TextEncoder();

/** An object store over a fake disk that counts reads and can damage what it holds. */
class Disk {
  readonly store = new ObjectStore();
  readonly images = new Map<number, Uint8Array>();
  reads = 0;
  private segment = 1;

  put(key: string, value: Uint8Array): void {
    const body = encodeKeyRequest(te.encode(key), value);
    const image = new Uint8Array(100 + body.length);
    image.set(body, 100);
    const segment = this.segment++;
    this.images.set(segment, image);
    const result = executeWrite(this.store, 1000 + segment, Operation.put, body, { segment, offset: 100 });
    expect(result.result).toBe(Result.ok);
  }

  /** Verifies what it reads against the entry's checksum, as the storage does. */
  readonly reader = (_key: string, entry: ObjectEntry): Uint8Array | null => {
    this.reads += 1;
    const bytes = this.images.get(entry.segment)!.slice(entry.offset, entry.offset + entry.size);
    return checksum(bytes) === entry.checksum ? bytes : null;
  };

  damage(key: string): void {
    const entry = this.store.get(key)!;
    this.images.get(entry.segment)![entry.offset] ^= 0xff;
  }

  get(key: string, cache: ReadCache | null): { result: Result; body: Uint8Array } {
    return executeRead(this.store, Operation.get, encodeKeyRequest(te.encode(key), null), {
      value: this.reader,
      block: () => null,
      value_size_max: 1 << 20,
      cache,
    });
  }
}

const value = (n: number, fill: number): Uint8Array => new Uint8Array(n).fill(fill);

describe("ReadCache", () => {
  test("a repeated get is answered with the same reply, without reading the disk", () => {
    const disk = new Disk();
    disk.put("a", value(1000, 7));
    const cache = new ReadCache(1 << 20);
    const first = disk.get("a", cache);
    const second = disk.get("a", cache);
    expect(first.result).toBe(Result.ok);
    expect(disk.reads).toBe(1);
    expect(second.body).toEqual(first.body);
    expect(second.body).toEqual(disk.get("a", null).body);
    expect([cache.hits, cache.misses]).toEqual([1, 1]);
  });

  test("a newer version of the key is read from disk, never answered from the cache", () => {
    const disk = new Disk();
    const cache = new ReadCache(1 << 20);
    disk.put("a", value(100, 1));
    disk.get("a", cache);
    disk.put("a", value(100, 2));
    const reply = disk.get("a", cache);
    expect(reply.body.subarray(object_info_size)).toEqual(value(100, 2));
    expect(readObjectInfo(reply.body, 0)!.version).toBe(disk.store.get("a")!.version);
    expect(disk.reads).toBe(2);
  });

  test("a cached value is read back and verified after read_cache_serves_max gets: damage at rest is found", () => {
    const disk = new Disk();
    const cache = new ReadCache(1 << 20);
    disk.put("a", value(100, 3));
    expect(disk.get("a", cache).result).toBe(Result.ok);
    disk.damage("a");
    for (let i = 0; i < read_cache_serves_max; i++) expect(disk.get("a", cache).result).toBe(Result.ok);
    expect(disk.reads).toBe(1);
    expect(disk.get("a", cache).result).toBe(Result.unavailable);
    expect(disk.reads).toBe(2);
  });

  test("bounded by bytes, the least recently served evicted first", () => {
    const disk = new Disk();
    const per = 1000 + object_info_size + 1 + read_cache_entry_overhead_bytes;
    const cache = new ReadCache(4 * per);
    for (const key of ["a", "b", "c", "d", "e"]) disk.put(key, value(1000, key.charCodeAt(0)));
    for (const key of ["a", "b", "c", "d"]) disk.get(key, cache);
    disk.get("a", cache); // now b is the least recently served
    disk.get("e", cache);
    expect(cache.size).toBe(4);
    expect(cache.bytes).toBeLessThanOrEqual(cache.bytes_max);
    const reads = disk.reads;
    for (const key of ["a", "c", "d", "e"]) disk.get(key, cache);
    expect(disk.reads).toBe(reads);
    disk.get("b", cache);
    expect(disk.reads).toBe(reads + 1);
  });

  test("a body larger than a quarter of the cache is not kept", () => {
    const disk = new Disk();
    const cache = new ReadCache(4000);
    disk.put("big", value(1000, 9));
    disk.get("big", cache);
    disk.get("big", cache);
    expect(disk.reads).toBe(2);
    expect(cache.size).toBe(0);
  });

  test("a kept reply goes out with the checksum computed when it was kept", () => {
    const disk = new Disk();
    const cache = new ReadCache(1 << 20);
    disk.put("a", value(100_000, 5));
    disk.get("a", cache);
    const body = disk.get("a", cache).body;
    expect(checksumOfBody(body)).toBe(checksum(body));
    const header = new Header();
    expect(finalize(header, body).header.checksum_body).toBe(checksum(body));
    // Bytes that change in memory no longer match the checksum the reply is sent with: the
    // receiver's body check (lib/net/codec.ts decode) rejects them.
    body[object_info_size] ^= 1;
    expect(finalize(new Header(), body).header.checksum_body).not.toBe(checksum(body));
  });
});
