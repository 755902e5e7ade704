#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <toastyfs.h>

int main(void)
{
    srand(time(NULL));
    char addr1[] = "127.0.0.1:8081";
    char addr2[] = "127.0.0.1:8082";
    char addr3[] = "127.0.0.1:8083";
    char *addrs[] = { addr1, addr2, addr3 };
    ToastyFS *tfs = toastyfs_init(rand(), addrs, 3);
    if (tfs == NULL) { fprintf(stderr, "toastyfs_init failed\n"); return 1; }
    char key[]  = "hello";
    char data[] = "world";
    ToastyFS_Result res;
    int ret = toastyfs_put(tfs, key, strlen(key), data, strlen(data), &res);
    if (ret < 0) { fprintf(stderr, "toastyfs_put returned %d\n", ret); toastyfs_free(tfs); return 1; }
    printf("Done.\n");
    toastyfs_free(tfs);
    return 0;
}
