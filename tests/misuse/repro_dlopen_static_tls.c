/* Since 9535787 (engine heap pointer in an initial-exec TLS slot) the
 * library is marked STATIC_TLS with a 2.7 KiB TLS segment, and dlopen()
 * fails: "cannot allocate memory in static TLS block". DESIGN.md asks for
 * the library to work dlopen'ed as well as preloaded.
 *   gcc repro_dlopen_static_tls.c -ldl && ./a.out target/release/libstratalloc.so
 * Workaround: GLIBC_TUNABLES=glibc.rtld.optional_static_tls=16384 ./a.out ... */
#include <dlfcn.h>
#include <stdio.h>
int main(int argc, char **argv) {
    const char *path = argc > 1 ? argv[1] : "target/release/libstratalloc.so";
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        printf("BUG: dlopen failed: %s\n", dlerror());
        return 1;
    }
    void *(*m)(size_t) = (void *(*)(size_t))dlsym(h, "malloc");
    void (*f)(void *) = (void (*)(void *))dlsym(h, "free");
    void *p = m(100);
    f(p);
    printf("ok: dlopen, malloc(100) = %p, free\n", p);
    return 0;
}
