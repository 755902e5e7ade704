# The C client library, for C users who expect `make` at the top of the tree. Everything is done by
# clients/c/Makefile (see clients/c/README.md); the toastyfs executables are built by ./build.sh.
#
#   make                                  clients/c/libtoasty.a, clients/c/libtoasty.so
#   make install [PREFIX=/usr/local] [DESTDIR=]   header, both libraries, lib/pkgconfig/toasty.pc
#   make uninstall [PREFIX=...] [DESTDIR=...]     removes what install put there
#   make check                            the C unit tests (no cluster needed)
#   make clean                            removes every build output (and the README's example programs)
#
# Variables given on the command line (PREFIX, DESTDIR, LIBDIR, CC, CFLAGS, ...) reach the sub-make.

.PHONY: all install uninstall check clean

all install uninstall check:
	$(MAKE) -C clients/c $@

clean:
	$(MAKE) -C clients/c clean
	rm -f example
