/** A startup problem the operator must fix (port in use, foreign or unwritable data directory):
 * printed as one line, exit 1, nothing touched. */
export class StartupError extends Error {
  override name = "StartupError";
}
