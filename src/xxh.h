/*
 * xxh.h - xxHash's XXH3, the checksum of every tensor.
 *
 * Where the library exports its x86 dispatch, XXH3 runs with the widest
 * vectors the CPU has (AVX2, AVX-512), chosen at run time: 2-3x the speed
 * of the generic build's SSE2 code, and the same hashes.
 */
#ifndef TSNAP_XXH_H
#define TSNAP_XXH_H

#include <xxhash.h>
#ifdef TSNAP_HAVE_XXH_DISPATCH
#include <xxh_x86dispatch.h> /* XXH3_64bits and _update: their _dispatch forms */
#endif

#endif
