// See man/kvfile.5, "Checksums": every record, segment header and hint file uses CRC-32C.
#define _GNU_SOURCE
#include "CKVFileSupport.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static uint32_t crc_table[8][256];
static int crc_ready = 0;
static int crc_hw = -1;

static void crc_init_tables(void) {
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : (c >> 1);
        crc_table[0][n] = c;
    }
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = crc_table[0][n];
        for (int t = 1; t < 8; t++) {
            c = crc_table[0][c & 0xff] ^ (c >> 8);
            crc_table[t][n] = c;
        }
    }
    __atomic_store_n(&crc_ready, 1, __ATOMIC_RELEASE);
}

uint32_t kvf_crc32c_software(uint32_t crc, const void *data, size_t length) {
    if (!__atomic_load_n(&crc_ready, __ATOMIC_ACQUIRE)) crc_init_tables();
    const unsigned char *p = data;
    crc = ~crc;
    while (length >= 8) {
        uint64_t word;
        memcpy(&word, p, 8);
        word ^= crc;
        crc = crc_table[7][word & 0xff] ^ crc_table[6][(word >> 8) & 0xff] ^
              crc_table[5][(word >> 16) & 0xff] ^ crc_table[4][(word >> 24) & 0xff] ^
              crc_table[3][(word >> 32) & 0xff] ^ crc_table[2][(word >> 40) & 0xff] ^
              crc_table[1][(word >> 48) & 0xff] ^ crc_table[0][word >> 56];
        p += 8;
        length -= 8;
    }
    while (length--) crc = crc_table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2")))
static uint32_t crc32c_sse42(uint32_t crc, const void *data, size_t length) {
    const unsigned char *p = data;
    uint64_t c = (uint32_t)~crc;
    while (length >= 8) {
        uint64_t word;
        memcpy(&word, p, 8);
        c = __builtin_ia32_crc32di(c, word);
        p += 8;
        length -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (length--) c32 = __builtin_ia32_crc32qi(c32, *p++);
    return ~c32;
}
#endif

int kvf_crc32c_is_hardware(void) {
    int hw = __atomic_load_n(&crc_hw, __ATOMIC_RELAXED);
    if (hw < 0) {
#if defined(__x86_64__)
        __builtin_cpu_init();
        hw = __builtin_cpu_supports("sse4.2") ? 1 : 0;
#else
        hw = 0;
#endif
        __atomic_store_n(&crc_hw, hw, __ATOMIC_RELAXED);
    }
    return hw;
}

uint32_t kvf_crc32c(uint32_t crc, const void *data, size_t length) {
#if defined(__x86_64__)
    if (kvf_crc32c_is_hardware()) return crc32c_sse42(crc, data, length);
#endif
    return kvf_crc32c_software(crc, data, length);
}

int kvf_fallocate(int fd, int64_t offset, int64_t length) {
    int r;
    do {
        r = fallocate(fd, 0, offset, length);
    } while (r != 0 && errno == EINTR);
    return r == 0 ? 0 : errno;
}

int kvf_punch_hole(int fd, int64_t offset, int64_t length) {
    int r;
    do {
        r = fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length);
    } while (r != 0 && errno == EINTR);
    return r == 0 ? 0 : errno;
}

int kvf_open_unnamed(const char *directory) {
    int fd;
    do {
        fd = open(directory, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    } while (fd < 0 && errno == EINTR);
    return fd;
}

int kvf_start_writeback(int fd, int64_t offset, int64_t length) {
    int r;
    do {
        r = sync_file_range(fd, offset, length, SYNC_FILE_RANGE_WRITE);
    } while (r != 0 && errno == EINTR);
    return r == 0 ? 0 : errno;
}

void kvf_futex_wait(uint32_t *word, uint32_t expected) {
    syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, expected, NULL, NULL, 0);
}

void kvf_futex_wake_all(uint32_t *word) {
    syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}
