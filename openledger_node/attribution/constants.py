"""Constants of attribution v1 (docs/attribution.md). Changing any of them is a new version."""

ATTRIBUTION_VERSION = 1

# Bounds on inputs (bytes of UTF-8 text).
MAX_CONTRIBUTION_BYTES = 262_144  # 256 KiB: one contribution's data
MAX_OUTPUT_BYTES = 65_536  # 64 KiB: one inference output

# Tokenization: BLAKE2b with a 4-byte digest and this personalization.
TOKEN_HASH_PERSON = b"olattr-v1"

# Spans.
MIN_SPAN = 8  # tokens: shorter matches earn nothing
MAX_FREQ = 32  # occurrences in the index: a span found more often earns nothing
MAX_SPAN = 128  # tokens: longer matches are cut into pieces (bounds the work per output token)
SCALE = 65_536  # score of a span held by one contribution: SCALE * length**2

# Near-duplicates: MinHash over token shingles, banded for lookup.
SHINGLE_TOKENS = 3
MINHASH_SLOTS = 64
MINHASH_SEED = 0x6F6C2D6174747231  # b"ol-attr1", seeds the splitmix64 stream of slot keys
SHINGLE_SEED = 0x6F6C2D7368696E67  # b"ol-shing", start of the shingle hash chain
BAND_ROWS = 4
BANDS = MINHASH_SLOTS // BAND_ROWS  # 16
NEAR_DUP_MIN_AGREE = 49  # of 64 slots; <= 15 disagreements < 16 bands, so a pair always shares a band

# Fee split.
BPS_DENOMINATOR = 10_000

# Index file.
INDEX_MAGIC = b"OLATIDX\x00"
INDEX_FORMAT = 1

MASK64 = (1 << 64) - 1
