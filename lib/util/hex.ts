/** A u32 as 8 hex digits (cluster incarnations in log lines and status). */
export function hex32(n: number): string {
  return n.toString(16).padStart(8, "0");
}
