/* Compiled and linked by the Makefile to learn whether OpenSSL (1.1.0 or later) can be used for TLS;
 * never run, never installed. */
#include <openssl/ssl.h>

#if OPENSSL_VERSION_NUMBER < 0x10100000L
#error "OpenSSL 1.1.0 or later is needed"
#endif

int main(void)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_free(ctx);
    return 0;
}
