# cython: language_level=3, cdivision=True, initializedcheck=False
"""Hot paths of attribution v1 (docs/attribution.md), in Cython.

Tokenization, bit-packed arrays, longest matches and maximal spans over a suffix array,
MinHash signatures. openledger_node/attribution/reference.py holds the pure-Python reference
of each function; tests/test_attribution_native.py checks that the two agree.

Bounds checks are off in the inner loops: every index there is derived from arrays
whose sizes the Python-facing functions check first (``_check_packed`` and the checks
in ``find_spans``), and the tests cover the edges (empty inputs, first and last rows of
the suffix array, matches that run into the end of the text, unknown tokens).
"""

cimport cython
from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcmp

import numpy as np

ctypedef fused packable_t:
    uint16_t
    uint32_t
    int32_t
    int64_t
    uint64_t

cdef uint64_t MIX_C1 = 0xBF58476D1CE4E5B9ULL
cdef uint64_t MIX_C2 = 0x94D049BB133111EBULL


cdef inline uint64_t mix64(uint64_t z) noexcept nogil:
    """The splitmix64 finalizer: a bijection on 64-bit words."""
    z = (z ^ (z >> 30)) * MIX_C1
    z = (z ^ (z >> 27)) * MIX_C2
    return z ^ (z >> 31)


cdef inline uint64_t pget(const uint64_t* words, uint64_t i, unsigned width, uint64_t mask) noexcept nogil:
    """Element ``i`` of a bit-packed array (one padding word at the end, so ``k + 1`` exists)."""
    cdef uint64_t bit = i * width
    cdef uint64_t k = bit >> 6
    cdef unsigned off = bit & 63
    # (x << 1) << (63 - off) is x << (64 - off), and 0 when off == 0, without a shift by 64
    return ((words[k] >> off) | ((words[k + 1] << 1) << (63 - off))) & mask


cdef inline uint64_t width_mask(unsigned width) noexcept nogil:
    return 0xFFFFFFFFFFFFFFFFULL if width == 64 else ((<uint64_t>1 << width) - 1)


def packed_words(uint64_t n, unsigned width):
    """Number of 64-bit words holding ``n`` elements of ``width`` bits, plus one padding word."""
    return (n * width + 63) // 64 + 1


def _check_packed(words, uint64_t n, unsigned width):
    if not 1 <= width <= 63:
        raise ValueError(f"packed width {width} out of range")
    if words.shape[0] != packed_words(n, width):
        raise ValueError(f"packed array has {words.shape[0]} words, {packed_words(n, width)} expected")


@cython.boundscheck(False)
@cython.wraparound(False)
def pack_bits(const packable_t[::1] values, unsigned width):
    """Pack non-negative ``values`` into ``width`` bits each, little-endian bit order."""
    if not 1 <= width <= 63:
        raise ValueError(f"packed width {width} out of range")
    cdef uint64_t n = values.shape[0]
    out = np.zeros(packed_words(n, width), dtype=np.uint64)
    cdef uint64_t[::1] words = out
    cdef uint64_t mask = width_mask(width)
    cdef uint64_t i, v, bit, k
    cdef unsigned off
    cdef bint bad = False
    with nogil:
        for i in range(n):
            if values[i] < 0 or (<uint64_t>values[i] & ~mask) != 0:
                bad = True
                break
            v = <uint64_t>values[i]
            bit = i * width
            k = bit >> 6
            off = bit & 63
            words[k] |= v << off
            if off + width > 64:
                words[k + 1] |= v >> (64 - off)
    if bad:
        raise ValueError(f"value at {i} does not fit in {width} bits")
    return out


@cython.boundscheck(False)
@cython.wraparound(False)
def unpack_bits(const uint64_t[::1] words, uint64_t n, unsigned width, uint64_t start=0, stop=None):
    """Elements ``start:stop`` of a packed array of ``n`` elements, as int64."""
    _check_packed(words, n, width)
    cdef uint64_t end = n if stop is None else stop
    if not start <= end <= n:
        raise IndexError(f"slice {start}:{end} out of a packed array of {n}")
    out = np.empty(end - start, dtype=np.int64)
    cdef int64_t[::1] dst = out
    cdef uint64_t mask = width_mask(width)
    cdef uint64_t i
    with nogil:
        for i in range(start, end):
            dst[i - start] = <int64_t>pget(&words[0], i, width, mask)
    return out


@cython.boundscheck(False)
@cython.wraparound(False)
def gather_bits(const uint64_t[::1] words, uint64_t n, unsigned width, const int64_t[::1] indices):
    """Elements ``indices`` of a packed array of ``n`` elements, as int64."""
    _check_packed(words, n, width)
    cdef Py_ssize_t count = indices.shape[0], j
    out = np.empty(count, dtype=np.int64)
    cdef int64_t[::1] dst = out
    cdef uint64_t mask = width_mask(width)
    cdef bint bad = False
    with nogil:
        for j in range(count):
            if indices[j] < 0 or <uint64_t>indices[j] >= n:
                bad = True
                break
            dst[j] = <int64_t>pget(&words[0], indices[j], width, mask)
    if bad:
        raise IndexError(f"index {indices[j]} out of a packed array of {n}")
    return out


@cython.boundscheck(False)
@cython.wraparound(False)
def minhash_signatures(
    const uint32_t[::1] ids,
    const int64_t[::1] offsets,
    const uint64_t[::1] slot_xor,
    const uint64_t[::1] slot_mul,
    unsigned shingle,
    uint64_t shingle_seed,
):
    """MinHash signature of each contribution ``ids[offsets[c]:offsets[c+1]]``.

    Shingles are the runs of ``min(shingle, length)`` consecutive token ids; a shingle's
    hash chains ``x = mix64(x ^ id)`` from ``shingle_seed``; slot j of the signature is
    the minimum over shingles of ``(x ^ slot_xor[j]) * slot_mul[j] mod 2**64``. An empty
    contribution keeps the all-ones signature.
    """
    cdef Py_ssize_t m = offsets.shape[0] - 1
    cdef Py_ssize_t slots = slot_xor.shape[0]
    cdef Py_ssize_t c, j
    cdef int64_t s, e, g, start, k
    cdef uint64_t x, v
    if m < 0 or slot_mul.shape[0] != slots or shingle < 1:
        raise ValueError("bad offsets, slot keys or shingle size")
    if offsets[0] != 0 or offsets[m] != ids.shape[0]:
        raise ValueError("offsets do not span the ids")
    for c in range(m):
        if offsets[c + 1] < offsets[c]:
            raise ValueError("offsets decrease")
    out = np.full((m, slots), 0xFFFFFFFFFFFFFFFF, dtype=np.uint64)
    cdef uint64_t[:, ::1] sig = out
    with nogil:
        for c in range(m):
            s = offsets[c]
            e = offsets[c + 1]
            g = shingle if e - s >= shingle else e - s
            if g == 0:
                continue
            for start in range(s, e - g + 1):
                x = shingle_seed
                for k in range(g):
                    x = mix64(x ^ ids[start + k])
                for j in range(slots):
                    v = (x ^ slot_xor[j]) * slot_mul[j]
                    if v < sig[c, j]:
                        sig[c, j] = v
    return out


cdef struct Text:
    const uint64_t* tok
    unsigned tok_width
    uint64_t tok_mask
    const uint64_t* sa
    unsigned sa_width
    uint64_t sa_mask
    uint64_t n


cdef inline uint64_t tok_at(const Text* t, uint64_t p) noexcept nogil:
    return pget(t.tok, p, t.tok_width, t.tok_mask)


cdef inline uint64_t sa_at(const Text* t, uint64_t row) noexcept nogil:
    return pget(t.sa, row, t.sa_width, t.sa_mask)


cdef inline int64_t extend(const Text* t, uint64_t p, const uint32_t* q, int64_t m, int64_t k) noexcept nogil:
    """Length of the common prefix of text[p:] and q[:m], known to be at least ``k``."""
    while k < m and p + k < t.n and tok_at(t, p + k) == q[k]:
        k += 1
    return k


cdef inline bint holds(const Text* t, uint64_t row, const uint32_t* q, int64_t length) noexcept nogil:
    """Whether the suffix at ``row`` starts with q[:length]."""
    return extend(t, sa_at(t, row), q, length, 0) >= length


cdef extern from *:
    """
    #define OL_PREFETCH(addr) __builtin_prefetch((const void*)(addr), 0, 3)
    """
    void OL_PREFETCH(const void* addr) noexcept nogil


# A hash-table probe longer than this (only crafted collisions make one) gives up: the
# tables then compute (TokenTable) or search (dense_text) the id afresh, so the work stays
# linear in the input.
DEF MAX_PROBES = 64

# Searches kept in flight at once: each waits on a cache miss (a suffix-array row, then
# the text at that row) while the others proceed, so misses overlap instead of queueing.
DEF IN_FLIGHT = 16


cdef struct Search:
    int64_t i       # query position
    int64_t blo     # rows of the bucket of q[i]: [blo, bhi)
    int64_t bhi
    int64_t lo      # suffix(lo) < q[i:] <= suffix(hi), rows blo - 1 and bhi being virtual
    int64_t hi
    int64_t llcp    # common prefix of suffix(lo), suffix(hi) with q[i:]
    int64_t rlcp
    int64_t mid
    uint64_t p      # text position of row mid
    int stage       # 0 idle, 1 row mid requested, 2 text at p requested


cdef inline void request_row(const Text* t, Search* s) noexcept nogil:
    s.mid = s.lo + (s.hi - s.lo) // 2
    OL_PREFETCH(t.sa + ((<uint64_t>s.mid * t.sa_width) >> 6))
    s.stage = 1


cdef inline bint start_search(
    const Text* t, const uint64_t* bucket, int64_t vocab, const uint32_t* q, int64_t m,
    int64_t* next_i, int64_t* lengths, int64_t* rows, Search* s,
) noexcept nogil:
    """Start the search of the next query position that needs one (positions whose first
    token is unknown get length 0 at once); False when none is left."""
    cdef uint64_t tk
    while next_i[0] < m:
        s.i = next_i[0]
        next_i[0] += 1
        tk = q[s.i]
        if tk >= 1 and tk <= <uint64_t>vocab and bucket[tk] < bucket[tk + 1] <= t.n:
            s.blo = bucket[tk]
            s.bhi = bucket[tk + 1]
            s.lo = s.blo - 1
            s.hi = s.bhi
            s.llcp = 1
            s.rlcp = 1
            request_row(t, s)
            return True
        lengths[s.i] = 0
        rows[s.i] = -1
    s.stage = 0
    return False


cdef void longest_matches(
    const Text* t, const uint64_t* bucket, int64_t vocab, const uint32_t* q, int64_t m,
    int64_t max_span, int64_t* lengths, int64_t* rows,
) noexcept nogil:
    """lengths[i]: the longest common prefix of q[i:i + max_span] with any suffix of the
    text, and rows[i]: a suffix-array row where it is found (-1 if lengths[i] == 0).

    A lower-bound binary search of q[i:] within the bucket of q[i]'s first token,
    skipping the prefix both bounds are known to share (Manber-Myers); the longest match
    is at one of the two rows around the lower bound. IN_FLIGHT searches run interleaved.
    """
    cdef Search searches[IN_FLIGHT]
    cdef Search* s
    cdef int64_t next_i = 0, k, i, limit
    cdef int active = 0, j
    for j in range(IN_FLIGHT):
        if start_search(t, bucket, vocab, q, m, &next_i, lengths, rows, &searches[j]):
            active += 1
    while active > 0:
        for j in range(IN_FLIGHT):
            s = &searches[j]
            if s.stage == 1:
                s.p = sa_at(t, s.mid)
                k = s.llcp if s.llcp < s.rlcp else s.rlcp
                OL_PREFETCH(t.tok + (((s.p + k) * t.tok_width) >> 6))
                s.stage = 2
            elif s.stage == 2:
                i = s.i
                limit = m - i if m - i < max_span else max_span
                k = extend(t, s.p, q + i, limit, s.llcp if s.llcp < s.rlcp else s.rlcp)
                if k == limit or (s.p + k < t.n and tok_at(t, s.p + k) > q[i + k]):
                    s.hi = s.mid
                    s.rlcp = k
                else:
                    s.lo = s.mid
                    s.llcp = k
                if s.hi - s.lo > 1:
                    request_row(t, s)
                else:
                    if s.lo >= s.blo and s.llcp >= s.rlcp:
                        lengths[i] = s.llcp
                        rows[i] = s.lo
                    else:
                        lengths[i] = s.rlcp
                        rows[i] = s.hi
                    if not start_search(t, bucket, vocab, q, m, &next_i, lengths, rows, s):
                        active -= 1


cdef bint occurrence_rows(
    const Text* t, int64_t blo, int64_t bhi, int64_t x, const uint32_t* q, int64_t length,
    int64_t max_freq, int64_t* row_lo, int64_t* row_hi,
) noexcept nogil:
    """The rows [row_lo, row_hi) of the suffixes starting with q[:length], given one of
    them (x) and their bucket [blo, bhi); False if there are more than max_freq."""
    cdef int64_t a = x - max_freq, b, lo, hi, mid
    if a >= blo and holds(t, a, q, length):
        return False
    # first holding row in (max(a, blo - 1), x]
    lo = a if a >= blo else blo - 1
    hi = x
    while hi - lo > 1:
        mid = lo + (hi - lo) // 2
        if holds(t, mid, q, length):
            hi = mid
        else:
            lo = mid
    row_lo[0] = hi
    b = hi + max_freq
    if b < bhi and holds(t, b, q, length):
        return False
    # first row after x not holding it, in (x, min(b, bhi)]
    lo = x
    hi = b if b < bhi else bhi
    while hi - lo > 1:
        mid = lo + (hi - lo) // 2
        if holds(t, mid, q, length):
            lo = mid
        else:
            hi = mid
    row_hi[0] = hi
    return True


@cython.boundscheck(False)
@cython.wraparound(False)
def find_spans(
    const uint64_t[::1] tok_words,
    unsigned tok_width,
    const uint64_t[::1] sa_words,
    unsigned sa_width,
    const uint64_t[::1] bucket,
    uint64_t n,
    const uint32_t[::1] query,
    int64_t min_span,
    int64_t max_freq,
    int64_t max_span,
):
    """Longest matches of every query position, and the maximal spans worth credit.

    ``query`` holds dense token ids (1..V; anything else matches nothing). Returns
    ``(lengths, spans)``: ``lengths[i]`` is the length of the longest prefix of
    ``query[i:i + max_span]`` found in the text, and ``spans`` is an int64 array of rows
    ``(start, length, row_lo, row_hi)``, the occurrences being the suffix-array rows
    ``row_lo:row_hi``. Positions are walked in order, keeping ``end`` (the largest
    ``i + lengths[i]`` so far, from 0) and ``resume`` (from 0): a position i < resume is
    passed over; otherwise, if ``i + lengths[i] > end`` it ends a new maximal span, kept
    when ``lengths[i] >= min_span`` and it occurs at most ``max_freq`` times, and ``end``
    becomes ``i + lengths[i]``; and if ``lengths[i] == max_span``, ``resume`` becomes
    ``i + max_span`` (a longer match is cut into pieces of max_span tokens).
    """
    _check_packed(tok_words, n, tok_width)
    _check_packed(sa_words, n, sa_width)
    # The bucket array is checked whole when an index is loaded; here each query token's
    # bucket is checked to lie inside the suffix array before it is searched.
    cdef int64_t vocab = bucket.shape[0] - 2
    if vocab < 0:
        raise ValueError("bucket array too short")
    if min_span < 1 or max_freq < 1 or max_span < 1:
        raise ValueError("min_span, max_freq and max_span must be positive")
    # Ids outside 1..vocab (unknown tokens, the separator 0) match nothing: make them
    # all 0xFFFFFFFF, which no text token equals.
    query_in = np.asarray(query)
    cdef const uint32_t[::1] q_ids = np.where((query_in >= 1) & (query_in <= vocab), query_in, 0xFFFFFFFF).astype(np.uint32)
    cdef int64_t m = q_ids.shape[0]

    cdef Text text
    text.tok = &tok_words[0]
    text.tok_width = tok_width
    text.tok_mask = width_mask(tok_width)
    text.sa = &sa_words[0]
    text.sa_width = sa_width
    text.sa_mask = width_mask(sa_width)
    text.n = n

    lengths_out = np.zeros(m, dtype=np.int64)
    rows_out = np.zeros(m, dtype=np.int64)
    spans_out = np.zeros((m, 4), dtype=np.int64)
    cdef int64_t[::1] lengths = lengths_out
    cdef int64_t[::1] rows = rows_out
    cdef int64_t[:, ::1] spans = spans_out
    cdef int64_t n_spans = 0, i, length, tk, row_lo = 0, row_hi = 0, end = 0, resume = 0
    if m == 0:
        return lengths_out, spans_out
    cdef const uint32_t* q = &q_ids[0]
    with nogil:
        longest_matches(&text, &bucket[0], vocab, q, m, max_span, &lengths[0], &rows[0])
        for i in range(m):
            if i < resume:
                continue
            length = lengths[i]
            if i + length > end:
                tk = q[i]
                if length >= min_span and occurrence_rows(
                    &text, bucket[tk], bucket[tk + 1], rows[i], q + i, length, max_freq, &row_lo, &row_hi
                ):
                    spans[n_spans, 0] = i
                    spans[n_spans, 1] = length
                    spans[n_spans, 2] = row_lo
                    spans[n_spans, 3] = row_hi
                    n_spans += 1
                end = i + length
            if length == max_span:
                resume = i + max_span
    return lengths_out, spans_out[:n_spans].copy()


@cython.boundscheck(False)
@cython.wraparound(False)
def bucket_starts(const uint64_t[::1] tok_words, unsigned tok_width, uint64_t n, uint64_t vocab):
    """``bucket[t]``: the first suffix-array row whose suffix starts with token t (0..vocab),
    and ``bucket[vocab + 1] == n``; the counts of each token, summed."""
    _check_packed(tok_words, n, tok_width)
    out = np.zeros(vocab + 2, dtype=np.uint64)
    cdef uint64_t[::1] bucket = out
    cdef uint64_t mask = width_mask(tok_width)
    cdef uint64_t i, t, total = 0, count
    cdef bint bad = False
    with nogil:
        for i in range(n):
            t = pget(&tok_words[0], i, tok_width, mask)
            if t > vocab:
                bad = True
                break
            bucket[t] += 1
        if not bad:
            for t in range(vocab + 2):
                count = bucket[t]
                bucket[t] = total
                total += count
    if bad:
        raise ValueError(f"token {t} at {i} exceeds the vocabulary of {vocab}")
    return out


# -- the text of an index ------------------------------------------------------------------


cdef inline bint find_slot(
    const uint32_t* keys, const uint8_t* used, uint64_t mask, uint32_t key, uint64_t* slot
) noexcept nogil:
    """Probe for ``key``: True with its slot, or False with the first free slot (slot ==
    mask + 1 when the probe gave up after MAX_PROBES)."""
    cdef uint64_t at = mix64(key) & mask, probes = 0
    while used[at]:
        if keys[at] == key:
            slot[0] = at
            return True
        at = (at + 1) & mask
        probes += 1
        if probes >= MAX_PROBES:
            slot[0] = mask + 1
            return False
    slot[0] = at
    return False


cdef class IdTable:
    """Set of 32-bit token ids with a dense id for each: open addressing, at most half
    full; an id whose probe runs past MAX_PROBES is left out (``missing`` lists those)."""

    cdef object keys_arr, used_arr, values_arr
    cdef uint32_t* keys
    cdef uint8_t* used
    cdef uint32_t* values
    cdef uint64_t mask
    cdef uint64_t count
    cdef public list missing

    def __cinit__(self, uint64_t capacity):
        self.missing = []
        self.allocate(capacity)

    cdef allocate(self, uint64_t capacity):
        self.keys_arr = np.zeros(capacity, dtype=np.uint32)
        self.used_arr = np.zeros(capacity, dtype=np.uint8)
        self.values_arr = np.zeros(capacity, dtype=np.uint32)
        cdef uint32_t[::1] k = self.keys_arr
        cdef uint8_t[::1] u = self.used_arr
        cdef uint32_t[::1] v = self.values_arr
        self.keys = &k[0]
        self.used = &u[0]
        self.values = &v[0]
        self.mask = capacity - 1
        self.count = 0

    cdef add(self, uint32_t key):
        cdef uint64_t slot, i
        if find_slot(self.keys, self.used, self.mask, key, &slot):
            return
        if slot > self.mask:
            self.missing.append(key)
            return
        if 2 * (self.count + 1) > self.mask + 1:
            old_keys = self.keys_arr[self.used_arr.astype(bool)]
            self.allocate(2 * (self.mask + 1))
            for i in range(len(old_keys)):
                self.add(old_keys[i])
            self.add(key)
            return
        self.keys[slot] = key
        self.used[slot] = 1
        self.count += 1

    def distinct(self):
        return np.unique(np.concatenate([self.keys_arr[self.used_arr.astype(bool)], np.array(self.missing, dtype=np.uint32)]))


@cython.boundscheck(False)
@cython.wraparound(False)
def dense_text(const uint32_t[::1] hashes, const int64_t[::1] offsets):
    """(vocab, text) of an index: ``vocab`` the sorted distinct token ids (uint32), and
    ``text`` each contribution ``hashes[offsets[c]:offsets[c+1]]`` in dense ids (1 + rank
    in vocab) followed by a separator 0 (uint32, len(hashes) + contributions long).

    Token ids go through a hash table (placed by mix64, compared exactly); an id whose probe
    runs past MAX_PROBES (only crafted collisions do that) is looked up in ``vocab`` by
    binary search instead, so the work stays bounded.
    """
    cdef Py_ssize_t m = offsets.shape[0] - 1, total = hashes.shape[0], c, i, lo, hi, mid
    if m < 0 or offsets[0] != 0 or offsets[m] != total:
        raise ValueError("offsets do not span the hashes")
    for c in range(m):
        if offsets[c + 1] < offsets[c]:
            raise ValueError("offsets decrease")
    cdef IdTable table = IdTable(1 << 16)
    for i in range(total):
        table.add(hashes[i])
    vocab = table.distinct()
    cdef const uint32_t[::1] vocab_view = vocab
    cdef Py_ssize_t vocab_size = vocab.shape[0]
    cdef uint64_t slot
    for i in range(vocab_size):
        if find_slot(table.keys, table.used, table.mask, vocab_view[i], &slot):
            table.values[slot] = <uint32_t>(i + 1)
    text_arr = np.zeros(total + m, dtype=np.uint32)
    cdef uint32_t[::1] text = text_arr
    cdef uint32_t h
    with nogil:
        for c in range(m):
            for i in range(offsets[c], offsets[c + 1]):
                h = hashes[i]
                if find_slot(table.keys, table.used, table.mask, h, &slot):
                    text[i + c] = table.values[slot]
                else:
                    lo = 0
                    hi = vocab_size
                    while hi - lo > 1:
                        mid = lo + (hi - lo) // 2
                        if vocab_view[mid] <= h:
                            lo = mid
                        else:
                            hi = mid
                    text[i + c] = <uint32_t>(lo + 1)
    return vocab, text_arr


# -- tokenization -------------------------------------------------------------------------



cdef inline bint is_word_byte(unsigned char c) noexcept nogil:
    return (c >= 0x30 and c <= 0x39) or (c >= 0x61 and c <= 0x7A) or (c >= 0x41 and c <= 0x5A)


cdef class TokenTable:
    """The tokenizer of attribution v1 (openledger_node/attribution/tokens.py has the rule
    as a regular expression) with a cache of token ids: token bytes -> ``hasher(token)``,
    in an open-addressing table whose keys are compared byte for byte (the FNV-1a hash
    only places them). ``hasher`` is called once per distinct token."""

    cdef uint64_t* keys
    cdef int64_t* offsets
    cdef uint32_t* lengths
    cdef uint32_t* values
    cdef uint64_t capacity
    cdef uint64_t count
    cdef unsigned char* arena
    cdef uint64_t arena_used
    cdef uint64_t arena_capacity
    cdef object hasher

    def __cinit__(self, hasher, uint64_t capacity=4096):
        self.hasher = hasher
        self.capacity = 16
        while self.capacity < 2 * capacity:
            self.capacity *= 2
        self.keys = <uint64_t*>malloc(self.capacity * sizeof(uint64_t))
        self.offsets = <int64_t*>malloc(self.capacity * sizeof(int64_t))
        self.lengths = <uint32_t*>malloc(self.capacity * sizeof(uint32_t))
        self.values = <uint32_t*>malloc(self.capacity * sizeof(uint32_t))
        self.arena_capacity = 1 << 16
        self.arena = <unsigned char*>malloc(self.arena_capacity)
        if not (self.keys and self.offsets and self.lengths and self.values and self.arena):
            raise MemoryError()
        for i in range(self.capacity):
            self.offsets[i] = -1
        self.count = 0
        self.arena_used = 0

    def __dealloc__(self):
        free(self.keys)
        free(self.offsets)
        free(self.lengths)
        free(self.values)
        free(self.arena)

    def __len__(self):
        return self.count

    cdef int reserve(self, uint64_t extra) except -1:
        """Room for ``extra`` more bytes at the end of the arena."""
        cdef uint64_t want = self.arena_used + extra
        cdef unsigned char* grown
        if want <= self.arena_capacity:
            return 0
        while self.arena_capacity < want:
            self.arena_capacity *= 2
        grown = <unsigned char*>realloc(self.arena, self.arena_capacity)
        if grown == NULL:
            raise MemoryError()
        self.arena = grown
        return 0

    cdef int grow(self) except -1:
        cdef uint64_t old_capacity = self.capacity, i, slot, probes
        cdef uint64_t* old_keys = self.keys
        cdef int64_t* old_offsets = self.offsets
        cdef uint32_t* old_lengths = self.lengths
        cdef uint32_t* old_values = self.values
        self.capacity = old_capacity * 2
        self.keys = <uint64_t*>malloc(self.capacity * sizeof(uint64_t))
        self.offsets = <int64_t*>malloc(self.capacity * sizeof(int64_t))
        self.lengths = <uint32_t*>malloc(self.capacity * sizeof(uint32_t))
        self.values = <uint32_t*>malloc(self.capacity * sizeof(uint32_t))
        if not (self.keys and self.offsets and self.lengths and self.values):
            raise MemoryError()
        for i in range(self.capacity):
            self.offsets[i] = -1
        self.count = 0
        for i in range(old_capacity):
            if old_offsets[i] >= 0:
                slot = mix64(old_keys[i]) & (self.capacity - 1)
                probes = 0
                while self.offsets[slot] >= 0 and probes < MAX_PROBES:
                    slot = (slot + 1) & (self.capacity - 1)
                    probes += 1
                if probes < MAX_PROBES:
                    self.keys[slot] = old_keys[i]
                    self.offsets[slot] = old_offsets[i]
                    self.lengths[slot] = old_lengths[i]
                    self.values[slot] = old_values[i]
                    self.count += 1
        free(old_keys)
        free(old_offsets)
        free(old_lengths)
        free(old_values)
        return 0

    cdef uint32_t token_id(self, uint64_t length) except? 0xFFFFFFFF:
        """The id of the token written at the arena's end (``length`` bytes, lower-cased);
        kept there if new, else dropped."""
        cdef const unsigned char* token = self.arena + self.arena_used
        cdef uint64_t h = 0xCBF29CE484222325ULL, i, slot, probes = 0
        cdef uint32_t value
        for i in range(length):
            h = (h ^ token[i]) * 0x100000001B3ULL
        if 2 * (self.count + 1) > self.capacity:
            self.grow()
        slot = mix64(h) & (self.capacity - 1)
        while self.offsets[slot] >= 0:
            if (self.keys[slot] == h and self.lengths[slot] == length
                    and memcmp(self.arena + self.offsets[slot], token, length) == 0):
                return self.values[slot]
            slot = (slot + 1) & (self.capacity - 1)
            probes += 1
            if probes >= MAX_PROBES:
                return self.hasher((<const char*>token)[:length])
        value = self.hasher((<const char*>token)[:length])
        self.keys[slot] = h
        self.offsets[slot] = self.arena_used
        self.lengths[slot] = <uint32_t>length
        self.values[slot] = value
        self.count += 1
        self.arena_used += length
        return value

    @cython.boundscheck(False)
    @cython.wraparound(False)
    def tokenize(self, const unsigned char[::1] data):
        """(ids uint32, starts int64, ends int64) of the tokens of ``data``."""
        cdef Py_ssize_t n = data.shape[0], i = 0, start, count = 0, j
        ids_out = np.empty(n, dtype=np.uint32)
        starts_out = np.empty(n, dtype=np.int64)
        ends_out = np.empty(n, dtype=np.int64)
        cdef uint32_t[::1] ids = ids_out
        cdef int64_t[::1] starts = starts_out
        cdef int64_t[::1] ends = ends_out
        cdef unsigned char c
        cdef unsigned char* out
        while i < n:
            c = data[i]
            start = i
            if is_word_byte(c):
                i += 1
                while i < n and is_word_byte(data[i]):
                    i += 1
            elif c >= 0x80:
                i += 1
                while i < n and 0x80 <= data[i] <= 0xBF:
                    i += 1
            else:
                i += 1
                continue
            self.reserve(i - start)
            out = self.arena + self.arena_used
            for j in range(start, i):
                c = data[j]
                out[j - start] = c + 32 if 0x41 <= c <= 0x5A else c
            ids[count] = self.token_id(i - start)
            starts[count] = start
            ends[count] = i
            count += 1
        return ids_out[:count].copy(), starts_out[:count].copy(), ends_out[:count].copy()
