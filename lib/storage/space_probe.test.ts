import { describe, expect, test } from "bun:test";
import { hasSpace, space_probe_path } from "./space_probe.ts";
import { FsError, type Fd, type FileSystem } from "./fs.ts";
import { SimFs, SimulatedCrash } from "../../sim/sim_fs.ts";
import { Prng } from "../util/prng.ts";

/** A file system whose writes fail with `failure` (every other call passes through). */
function failingWrites(failure: Error): FileSystem {
  const inner = new SimFs(new Prng(3));
  return new Proxy(inner, {
    get(target, name, receiver) {
      if (name === "pwrite")
        return (_fd: Fd, _b: Uint8Array, _o: number) => {
          throw failure;
        };
      const value = Reflect.get(target, name, receiver) as unknown;
      return typeof value === "function" ? value.bind(target) : value;
    },
  }) as FileSystem;
}

describe("space probe", () => {
  test("a disk that takes the write has space, and the probe file is gone afterwards", () => {
    const fs = new SimFs(new Prng(1));
    fs.mkdir("journal");
    expect(hasSpace(fs, 4096)).toBe(true);
    expect(fs.exists(space_probe_path)).toBe(false);
  });

  test("a full disk (ENOSPC) has no space; the probe file is still removed", () => {
    const fs = failingWrites(new FsError("ENOSPC", "full"));
    fs.mkdir("journal");
    expect(hasSpace(fs, 4096)).toBe(false);
    expect(fs.exists(space_probe_path)).toBe(false);
  });

  test("an error that is not the file system's is a bug and propagates", () => {
    const fs = failingWrites(new TypeError("bug"));
    fs.mkdir("journal");
    expect(() => hasSpace(fs, 4096)).toThrow(TypeError);
  });

  test("a power loss inside the probe takes the caller down instead of reading as no space", () => {
    const fs = new SimFs(new Prng(4));
    fs.mkdir("journal");
    fs.armCrash(1);
    expect(() => hasSpace(fs, 4096)).toThrow(SimulatedCrash);
  });
});
