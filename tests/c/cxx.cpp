// The C++ allocation functions as a C++ program uses them, with
// libstratalloc.so preloaded (scripts/test-c.sh builds this with g++).
//
//   cxx                 every operator new/delete form: served by the
//                       library, alignment honoured, nothrow forms, the new
//                       handler called on failure, std::bad_alloc thrown
//                       and caught; exit 0 if all hold
//   cxx wrong-delete    a sized delete with a size larger than the block
//                       (delete through a pointer of the wrong, larger type):
//                       prints the pointer, then must abort with a message
//                       naming it and both sizes
#include <dlfcn.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <initializer_list>
#include <new>

#include "check.h"

static bool aligned(const void *p, size_t a) { return ((uintptr_t)p & (a - 1)) == 0; }

// The object file that defines `sym` as this program resolves it.
static const char *defined_in(const char *sym) {
    void *f = dlsym(RTLD_DEFAULT, sym);
    Dl_info info;
    if (!f || !dladdr(f, &info) || !info.dli_fname) return "(not found)";
    return info.dli_fname;
}

static bool ours(const char *sym) { return strstr(defined_in(sym), "libstratalloc") != nullptr; }

struct alignas(256) Wide {
    char bytes[300];
};

struct Small {
    int a;
};
struct Big : Small {
    char rest[4096];
};

static int handler_calls;
static void handler_once() {
    handler_calls++;
    std::set_new_handler(nullptr);  // next failure: no handler
}

static void *volatile sink;  // keeps a result the test only throws past

static int handler_throws_calls;
static void handler_throws() {
    handler_throws_calls++;
    throw std::bad_alloc();
}

static int wrong_delete() {
    // A block the size of Small, deleted as a Big: the compiler passes
    // sizeof(Big) to the sized operator delete.
    Small *s = new Small;
    Big *b = static_cast<Big *>(s);
    printf("%p\n", (void *)b);
    fflush(stdout);
    delete b;
    fprintf(stderr, "cxx: sized delete with the wrong size was not caught\n");
    return 1;
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "wrong-delete")) return wrong_delete();

    // Every form is defined by the preloaded library, not libstdc++.
    const char *syms[] = {
        "_Znwm", "_Znam", "_ZnwmRKSt9nothrow_t", "_ZnamRKSt9nothrow_t",
        "_ZnwmSt11align_val_t", "_ZnamSt11align_val_t",
        "_ZnwmSt11align_val_tRKSt9nothrow_t", "_ZnamSt11align_val_tRKSt9nothrow_t",
        "_ZdlPv", "_ZdaPv", "_ZdlPvm", "_ZdaPvm", "_ZdlPvRKSt9nothrow_t",
        "_ZdaPvRKSt9nothrow_t", "_ZdlPvSt11align_val_t", "_ZdaPvSt11align_val_t",
        "_ZdlPvmSt11align_val_t", "_ZdaPvmSt11align_val_t",
        "_ZdlPvSt11align_val_tRKSt9nothrow_t", "_ZdaPvSt11align_val_tRKSt9nothrow_t",
    };
    for (const char *s : syms)
        if (!ours(s)) {
            fprintf(stderr, "%s is defined in %s\n", s, defined_in(s));
            CHECK(ours(s));
        }

    // Plain new/delete: a block malloc_usable_size knows, sized deletes
    // with the right size accepted.
    for (size_t n : {0ul, 1ul, 24ul, 1000ul, 70000ul, 3ul << 20}) {
        char *p = new char[n];
        CHECK(p && aligned(p, 16) && malloc_usable_size(p) >= n);
        memset(p, 1, n);
        delete[] p;
        void *q = ::operator new(n);
        CHECK(q && malloc_usable_size(q) >= n);
        ::operator delete(q, n);
        q = ::operator new[](n);
        ::operator delete[](q, n);
    }
    Small *s = new Small{7};
    CHECK(s->a == 7);
    delete s;  // sized: sizeof(Small)

    // Aligned new, every form, alignments up to 1 MiB.
    Wide *w = new Wide;
    CHECK(aligned(w, 256));
    delete w;  // sized + aligned
    Wide *wa = new Wide[5];
    CHECK(aligned(wa, 256));
    delete[] wa;
    for (size_t a = 32; a <= (1ul << 20); a <<= 1) {
        std::align_val_t al{a};
        void *p = ::operator new(100, al);
        CHECK(aligned(p, a) && malloc_usable_size(p) >= 100);
        ::operator delete(p, 100, al);
        p = ::operator new[](5000, al);
        CHECK(aligned(p, a));
        ::operator delete[](p, 5000, al);
        p = ::operator new(10, al, std::nothrow);
        CHECK(p && aligned(p, a));
        ::operator delete(p, al, std::nothrow);
        p = ::operator new[](10, al, std::nothrow);
        CHECK(p && aligned(p, a));
        ::operator delete[](p, al);
    }

    // nothrow: null on failure, no abort; nothrow delete frees.
    size_t huge = (size_t)PTRDIFF_MAX;
    CHECK(::operator new(huge, std::nothrow) == nullptr);
    CHECK(::operator new[](huge, std::nothrow) == nullptr);
    CHECK(::operator new(huge, std::align_val_t{64}, std::nothrow) == nullptr);
    void *p = ::operator new(40, std::nothrow);
    CHECK(p);
    ::operator delete(p, std::nothrow);
    ::operator delete(nullptr);
    ::operator delete(nullptr, 100);

    // The new handler is called on failure, then the call retried.
    std::set_new_handler(handler_once);
    CHECK(::operator new[](huge, std::nothrow) == nullptr);
    CHECK(handler_calls == 1);

    // The throwing forms throw std::bad_alloc: with no handler, from a
    // handler, and (without calling the handler) for a bad alignment.
    int caught = 0;
    try {
        char *c = new char[huge];
        fprintf(stderr, "new char[%zu] = %p\n", huge, (void *)c);
    } catch (std::bad_alloc &) {
        caught++;
    }
    try {
        sink = ::operator new(huge, std::align_val_t{4096});
    } catch (std::bad_alloc &) {
        caught++;
    }
    std::set_new_handler(handler_throws);
    try {
        sink = ::operator new(huge);
    } catch (std::bad_alloc &) {
        caught++;
    }
    try {
        sink = ::operator new(64, std::align_val_t{48});
    } catch (std::bad_alloc &) {
        caught++;
    }
    std::set_new_handler(nullptr);
    CHECK(caught == 4);
    CHECK(handler_throws_calls == 1);

    if (failures) fprintf(stderr, "cxx: %d failures\n", failures);
    return failures != 0;
}
