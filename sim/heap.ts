/** A binary min-heap ordered by (time, sequence): events at the same time run in the order they
 * were scheduled, so the simulation is deterministic. */
export interface Timed {
  time: number;
  seq: number;
}

export class Heap<T extends Timed> {
  private readonly items: T[] = [];

  get size(): number {
    return this.items.length;
  }

  // Sifting moves the hole, not the item: one store per level instead of a swap (this runs twice
  // per simulated event). (time, seq) is unique, so the pop order is the same as any heap's.
  push(item: T): void {
    const a = this.items;
    let i = a.length;
    a.push(item);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const p = a[parent]!;
      if (!less(item, p)) break;
      a[i] = p;
      i = parent;
    }
    a[i] = item;
  }

  peek(): T | undefined {
    return this.items[0];
  }

  pop(): T | undefined {
    const a = this.items;
    if (a.length === 0) return undefined;
    const top = a[0]!;
    const last = a.pop()!;
    const n = a.length;
    if (n > 0) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= n) break;
        const r = l + 1;
        let m = l;
        let child = a[l]!;
        if (r < n && less(a[r]!, child)) {
          m = r;
          child = a[r]!;
        }
        if (!less(child, last)) break;
        a[i] = child;
        i = m;
      }
      a[i] = last;
    }
    return top;
  }
}

function less(a: Timed, b: Timed): boolean {
  return a.time < b.time || (a.time === b.time && a.seq < b.seq);
}
