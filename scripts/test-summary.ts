export {};
// Prints "N passed, N failed, N skipped" from bun's JUnit report: bun test prints "N pass" /
// "N fail", which is not the line CI looks for.
const path = process.argv[2] ?? "reports/junit.xml";
const file = Bun.file(path);
if (!(await file.exists())) {
  console.log("0 passed, 1 failed, 0 skipped");
  console.error(`error: no test report at ${path}: bun test did not run to the end`);
  process.exit(1);
}
const xml = await file.text();
const head = xml.match(/<testsuites\b[^>]*>/)?.[0] ?? "";
const attr = (name: string): number => Number(head.match(new RegExp(`\\b${name}="(\\d+)"`))?.[1] ?? 0);
const tests = attr("tests");
const failed = attr("failures") + attr("errors");
const skipped = attr("skipped");
console.log(`${tests - failed - skipped} passed, ${failed} failed, ${skipped} skipped`);
if (tests === 0) process.exit(1);
