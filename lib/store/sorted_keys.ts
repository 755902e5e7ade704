/**
 * The namespace's keys in byte order, for list(prefix, after, limit). Keys are latin1 strings
 * (one char per byte), so JavaScript's code-unit comparison is byte order. A sorted array with
 * binary search: inserts and deletes move memory (about 50 µs at 100,000 keys), which is far below
 * an fsync; a B-tree can replace it behind the same interface if namespaces grow much larger.
 */
export class SortedKeys {
  private readonly keys: string[] = [];

  get size(): number {
    return this.keys.length;
  }

  /** Index of the first key >= key. */
  private lowerBound(key: string): number {
    let lo = 0;
    let hi = this.keys.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.keys[mid]! < key) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  insert(key: string): void {
    const i = this.lowerBound(key);
    if (this.keys[i] !== key) this.keys.splice(i, 0, key);
  }

  remove(key: string): void {
    const i = this.lowerBound(key);
    if (this.keys[i] === key) this.keys.splice(i, 1);
  }

  /** Up to limit keys that start with prefix and sort after `after` (exclusive), in order;
   * truncated says whether more such keys exist. */
  range(prefix: string, after: string, limit: number): { keys: string[]; truncated: boolean } {
    const start = after >= prefix ? this.lowerBound(after + "\u0000") : this.lowerBound(prefix);
    const keys: string[] = [];
    for (let i = start; i < this.keys.length; i++) {
      const key = this.keys[i]!;
      if (!key.startsWith(prefix)) break;
      if (keys.length === limit) return { keys, truncated: true };
      keys.push(key);
    }
    return { keys, truncated: false };
  }

  all(): IterableIterator<string> {
    return this.keys.values();
  }
}
