/** toastyfs's own version: package.json's, bundled into each executable when it is built. */
import package_json from "../package.json" with { type: "json" };

export const toastyfs_version: string = package_json.version;
