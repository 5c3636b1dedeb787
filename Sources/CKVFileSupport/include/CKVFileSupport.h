#ifndef CKVFILESUPPORT_H
#define CKVFILESUPPORT_H

#include <stddef.h>
#include <stdint.h>

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as in iSCSI and ext4.
/// `crc` is the running value: pass 0 to start; the result needs no final XOR by the caller.
uint32_t kvf_crc32c(uint32_t crc, const void *data, size_t length);

/// 1 when kvf_crc32c uses the SSE4.2 instruction on this CPU, 0 when it uses the table.
int kvf_crc32c_is_hardware(void);

/// The software path, exposed so tests can compare both.
uint32_t kvf_crc32c_software(uint32_t crc, const void *data, size_t length);

/// fallocate(2) with mode 0; returns 0 or an errno value.
int kvf_fallocate(int fd, int64_t offset, int64_t length);

/// fallocate(2) punching a hole (the size stays); returns 0 or an errno value.
int kvf_punch_hole(int fd, int64_t offset, int64_t length);

/// open(2) of an unnamed file in `directory` (O_TMPFILE, read-write, mode 0600):
/// it is gone when its last descriptor closes. Returns the descriptor, or -1 with errno set.
int kvf_open_unnamed(const char *directory);

/// sync_file_range(2) with SYNC_FILE_RANGE_WRITE: start writeback of a range without waiting.
/// Returns 0 or an errno value.
int kvf_start_writeback(int fd, int64_t offset, int64_t length);

/// Asks the CPU to start loading the cache line at `address` (a hint only).
static inline void kvf_prefetch(const void *address) { __builtin_prefetch(address, 1, 3); }

/// A futex word for waiting without a mutex (group commit): wait while
/// `*word == expected` (returns at once otherwise, on a wake, or on a signal).
void kvf_futex_wait(uint32_t *word, uint32_t expected);

/// Wakes every thread waiting on `word`.
void kvf_futex_wake_all(uint32_t *word);

/// Sequentially consistent load and increment of a futex word.
static inline uint32_t kvf_word_load(uint32_t *word) { return __atomic_load_n(word, __ATOMIC_SEQ_CST); }
static inline void kvf_word_increment(uint32_t *word) { __atomic_fetch_add(word, 1, __ATOMIC_SEQ_CST); }

/// Loads and stores of 64-bit words other processes share through a mapping
/// (the index file): acquire and release order, never torn.
static inline uint64_t kvf_load_acquire_u64(const void *address) { return __atomic_load_n((const uint64_t *)address, __ATOMIC_ACQUIRE); }
static inline void kvf_store_release_u64(void *address, uint64_t value) { __atomic_store_n((uint64_t *)address, value, __ATOMIC_RELEASE); }
static inline uint64_t kvf_fetch_or_relaxed_u64(void *address, uint64_t bits) { return __atomic_fetch_or((uint64_t *)address, bits, __ATOMIC_RELAXED); }
static inline uint64_t kvf_load_relaxed_u64(const void *address) { return __atomic_load_n((const uint64_t *)address, __ATOMIC_RELAXED); }
static inline void kvf_store_relaxed_u64(void *address, uint64_t value) { __atomic_store_n((uint64_t *)address, value, __ATOMIC_RELAXED); }
/// Fences for a seqlock: stores after a release fence are not seen before the stores ahead of it, loads before an acquire fence are done before the loads after it.
static inline void kvf_fence_release(void) { __atomic_thread_fence(__ATOMIC_RELEASE); }
static inline void kvf_fence_acquire(void) { __atomic_thread_fence(__ATOMIC_ACQUIRE); }

#endif
