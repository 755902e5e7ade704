import { describe, expect, test } from "bun:test";
import { DiskSpace, no_space_abdicate_interval_ticks, space_probe_interval_ticks } from "./disk_space.ts";

function enospc(): Error & { code: string } {
  return Object.assign(new Error("ENOSPC: no space left on device, write"), { code: "ENOSPC" });
}

function setup(): { space: DiskSpace; logs: string[]; disk: { room: boolean; probes: number[] } } {
  const logs: string[] = [];
  const disk = { room: false, probes: [] as number[] };
  const space = new DiskSpace(
    2,
    { log: (level, text) => logs.push(`${level} ${text}`) },
    {
      hasSpace: (bytes) => {
        disk.probes.push(bytes);
        return disk.room;
      },
    },
    4096,
  );
  return { space, logs, disk };
}

describe("DiskSpace", () => {
  test("a failed write fills it, said once per episode", () => {
    const { space, logs } = setup();
    expect(space.full).toBe(false);
    space.filled(enospc());
    space.filled(enospc());
    expect(space.full).toBe(true);
    expect(logs.length).toBe(1);
    expect(logs[0]).toContain("error replica 2: ENOSPC");
    expect(logs[0]).toContain("refusing new writes");
    space.invariants();
  });

  test("another error is never taken for a full disk", () => {
    const { space } = setup();
    expect(() => space.filled(Object.assign(new Error("EIO"), { code: "EIO" }))).toThrow("taken for a full disk");
  });

  test("probes once per interval, for a batch's worth, and clears only when the probe finds room", () => {
    const { space, logs, disk } = setup();
    space.filled(enospc());
    for (let i = 1; i < space_probe_interval_ticks; i++) expect(space.tick()).toBe(false);
    expect(disk.probes).toEqual([]);
    expect(space.tick()).toBe(false); // probed: still full
    expect(disk.probes).toEqual([4096]);
    expect(space.full).toBe(true);
    disk.room = true;
    for (let i = 1; i < space_probe_interval_ticks; i++) expect(space.tick()).toBe(false);
    expect(space.tick()).toBe(true);
    expect(disk.probes).toEqual([4096, 4096]);
    expect(space.full).toBe(false);
    expect(logs.at(-1)).toBe("info replica 2: disk space is available again: accepting writes");
    space.invariants();
  });

  test("a full primary abdicates at once, then at most once per interval of being full", () => {
    const { space } = setup();
    space.filled(enospc());
    expect(space.abdicate()).toBe(true);
    expect(space.abdicate()).toBe(false);
    for (let i = 1; i < no_space_abdicate_interval_ticks; i++) space.tick();
    expect(space.abdicate()).toBe(false);
    space.tick();
    expect(space.abdicate()).toBe(true);
    space.invariants();
  });

  test("filling again restarts the probe interval", () => {
    const { space, disk } = setup();
    disk.room = true;
    space.filled(enospc());
    for (let i = 1; i < space_probe_interval_ticks; i++) space.tick();
    space.filled(enospc());
    expect(space.tick()).toBe(false);
    expect(disk.probes).toEqual([]);
  });

  test("ticking with room on disk is a bug", () => {
    const { space } = setup();
    expect(() => space.tick()).toThrow("probing for space with room on disk");
  });
});
