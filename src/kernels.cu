/*
 * kernels.cu - packing a strided tensor in CUDA memory into C order and
 * back, on the device.  Built into a fat binary (cubins for the listed
 * architectures plus PTX for newer ones) that cuda.c loads with the
 * driver API; the launch arguments are cuda.c's tsnap_kview.
 *
 * Element e of a call stands for logical element first + e of the view:
 * its index is split over the shape from the last axis, and the strides
 * (in elements) give its offset.  Elements move as 1-, 2-, 4- or 8-byte
 * words when the addresses allow it, byte by byte otherwise.
 */
#define KVIEW_MAX_NDIM 32

struct tsnap_kview {
    char *base;
    long long shape[KVIEW_MAX_NDIM];
    long long strides[KVIEW_MAX_NDIM];
    int ndim;
    int itemsize;
    int word; /* bytes per load: 1, 2, 4 or 8, dividing itemsize */
};

__device__ static long long element_offset(const tsnap_kview &v, unsigned long long index)
{
    long long off = 0;
    for (int k = v.ndim - 1; k >= 0; k--) {
        unsigned long long d = (unsigned long long)v.shape[k];
        off += (long long)(index % d) * v.strides[k];
        index /= d;
    }
    return off * v.itemsize;
}

template <typename W>
__device__ static void move(char *to, const char *from, int words)
{
    for (int i = 0; i < words; i++)
        ((W *)to)[i] = ((const W *)from)[i];
}

__device__ static void move_element(char *to, const char *from, int itemsize, int word)
{
    switch (word) {
    case 8: move<unsigned long long>(to, from, itemsize / 8); break;
    case 4: move<unsigned int>(to, from, itemsize / 4); break;
    case 2: move<unsigned short>(to, from, itemsize / 2); break;
    default: move<unsigned char>(to, from, itemsize); break;
    }
}

extern "C" __global__ void tsnap_gather(tsnap_kview v, unsigned long long first,
                                        unsigned long long n, char *out)
{
    for (unsigned long long e = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; e < n;
         e += (unsigned long long)gridDim.x * blockDim.x)
        move_element(out + e * v.itemsize, v.base + element_offset(v, first + e), v.itemsize,
                     v.word);
}

extern "C" __global__ void tsnap_scatter(tsnap_kview v, unsigned long long first,
                                         unsigned long long n, const char *in)
{
    for (unsigned long long e = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; e < n;
         e += (unsigned long long)gridDim.x * blockDim.x)
        move_element(v.base + element_offset(v, first + e), in + e * v.itemsize, v.itemsize,
                     v.word);
}
