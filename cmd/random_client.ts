/** toastyfs_random_client: placeholder entry until the random workload lands (issue 5). */
console.error("error: toastyfs_random_client is not built yet");
process.exit(1);
