/*
 * Replica addresses and the cluster membership derived from them, exactly as lib/net/address.ts
 * derives it (docs/PROTOCOL.md §3.1): canonical "host:port" strings (IPv6 as "[host]:port", the
 * host as given, the port in decimal), sorted bytewise; a replica's index is its position in that
 * order, and the cluster id is xxHash64 of "toastyfs-cluster-v1\n" + the sorted strings joined by
 * "\n".
 */
#include <stdio.h>
#include <string.h>

#include "tfs_internal.h"

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }
static int is_digit(char c) { return c >= '0' && c <= '9'; }
static int is_hex(char c) { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }
static int is_name_char(char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '.' || c == '_' || c == '-';
}

/* 1 to 5 decimal digits, 1..65535. */
static int parse_port(const char *p, size_t len, uint16_t *port)
{
    size_t i;
    unsigned long value = 0;
    if (len < 1 || len > 5) return -1;
    for (i = 0; i < len; i++) {
        if (!is_digit(p[i])) return -1;
        value = value * 10 + (unsigned long)(p[i] - '0');
    }
    if (value < 1 || value > 65535) return -1;
    *port = (uint16_t)value;
    return 0;
}

int tfs_parse_address(const char *text, tfs_address *out)
{
    const char *start, *end, *host, *host_end, *port;
    size_t i, host_len;

    if (text == NULL || out == NULL) return -1;
    start = text;
    while (*start != '\0' && is_space(*start)) start++;
    end = start + strlen(start);
    while (end > start && is_space(end[-1])) end--;

    if (start < end && *start == '[') {
        host = start + 1;
        host_end = memchr(host, ']', (size_t)(end - host));
        if (host_end == NULL || host_end + 1 >= end || host_end[1] != ':') return -1;
        for (i = 0; host + i < host_end; i++)
            if (!is_hex(host[i]) && host[i] != ':' && host[i] != '.') return -1;
        port = host_end + 2;
    } else {
        host = start;
        host_end = memchr(start, ':', (size_t)(end - start));
        if (host_end == NULL) return -1; /* no port */
        for (i = 0; host + i < host_end; i++)
            if (!is_name_char(host[i])) return -1;
        port = host_end + 1;
    }
    host_len = (size_t)(host_end - host);
    if (host_len < 1 || host_len > TFS_HOST_MAX) return -1;
    if (parse_port(port, (size_t)(end - port), &out->port) != 0) return -1;
    memcpy(out->host, host, host_len);
    out->host[host_len] = '\0';
    if (memchr(out->host, ':', host_len) != NULL)
        snprintf(out->text, sizeof out->text, "[%s]:%u", out->host, (unsigned)out->port);
    else
        snprintf(out->text, sizeof out->text, "%s:%u", out->host, (unsigned)out->port);
    return 0;
}

int tfs_membership(char **addrs, int count, tfs_address *sorted, uint64_t *cluster)
{
    static const char prefix[] = "toastyfs-cluster-v1\n";
    char buffer[sizeof prefix + TOASTYFS_REPLICAS_MAX * sizeof sorted[0].text];
    size_t used;
    int i, j;

    if (addrs == NULL || count < 1 || count > TOASTYFS_REPLICAS_MAX) return -1;
    for (i = 0; i < count; i++) {
        tfs_address a;
        if (addrs[i] == NULL || tfs_parse_address(addrs[i], &a) != 0) return -1;
        /* Insertion sort by canonical text (strcmp compares bytes as unsigned char). */
        for (j = i; j > 0 && strcmp(sorted[j - 1].text, a.text) > 0; j--) sorted[j] = sorted[j - 1];
        sorted[j] = a;
    }
    for (i = 1; i < count; i++)
        if (strcmp(sorted[i - 1].text, sorted[i].text) == 0) return -1; /* listed twice */

    used = sizeof prefix - 1;
    memcpy(buffer, prefix, used);
    for (i = 0; i < count; i++) {
        size_t len = strlen(sorted[i].text);
        if (i > 0) buffer[used++] = '\n';
        memcpy(buffer + used, sorted[i].text, len);
        used += len;
    }
    *cluster = tfs_xxh64(buffer, used, 0);
    return 0;
}
