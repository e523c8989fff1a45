//! Key encoding shared by every engine.
//!
//! One byte space holds two families of keys, chosen so that each family scans in the order it
//! is used:
//!
//! ```text
//! 0x01 0x01                                   store ident            (kv engine, meta cf)
//! 0x01 0x02 region_id:u64be 0x01 index:u64be  raft log entry         (raft engine)
//! 0x01 0x02 region_id:u64be 0x02              RaftLocalState         (raft engine)
//! 0x01 0x02 region_id:u64be 0x03              RaftApplyState         (kv engine, meta cf)
//! 0x01 0x03 region_id:u64be 0x01              RegionLocalState       (kv engine, meta cf)
//! 'z' user_key                                user data              (kv engine, data cfs)
//! ```
//!
//! Big-endian integers keep numeric order under byte-wise comparison, so a region's log scans
//! by index and region states scan by region id. Local keys (0x01...) sort before all data keys
//! ('z'...). A region's range `[start, end)` maps to `['z' start, 'z' end)`, and the empty end
//! key (+infinity) maps to `DATA_MAX_KEY` ('{', the byte after 'z').

/// First byte of every key that is local to a store (never replicated as user data).
pub const LOCAL_PREFIX: u8 = 0x01;
/// First byte of every user data key.
pub const DATA_PREFIX: u8 = b'z';
/// Lowest data key.
pub const DATA_MIN_KEY: &[u8] = &[DATA_PREFIX];
/// One past the highest data key.
pub const DATA_MAX_KEY: &[u8] = &[DATA_PREFIX + 1];
/// Lowest local key.
pub const LOCAL_MIN_KEY: &[u8] = &[LOCAL_PREFIX];
/// One past the highest local key.
pub const LOCAL_MAX_KEY: &[u8] = &[LOCAL_PREFIX + 1];

/// Key of the store's identity.
pub const STORE_IDENT_KEY: &[u8] = &[LOCAL_PREFIX, 0x01];

/// Key of a first region this store prepared for a new cluster and has not yet had accepted
/// (or refused) by the placement driver.
pub const PREPARE_BOOTSTRAP_KEY: &[u8] = &[LOCAL_PREFIX, 0x04];

const REGION_RAFT_PREFIX: u8 = 0x02;
const REGION_META_PREFIX: u8 = 0x03;
const RAFT_LOG_SUFFIX: u8 = 0x01;
const RAFT_STATE_SUFFIX: u8 = 0x02;
const APPLY_STATE_SUFFIX: u8 = 0x03;
const REGION_STATE_SUFFIX: u8 = 0x01;

/// Lowest region meta key; with [`REGION_META_MAX_KEY`], bounds a scan of all region states.
pub const REGION_META_MIN_KEY: &[u8] = &[LOCAL_PREFIX, REGION_META_PREFIX];
/// One past the highest region meta key.
pub const REGION_META_MAX_KEY: &[u8] = &[LOCAL_PREFIX, REGION_META_PREFIX + 1];

const REGION_KEY_LEN: usize = 2 + 8 + 1;
const RAFT_LOG_KEY_LEN: usize = REGION_KEY_LEN + 8;

fn region_key(prefix: u8, region_id: u64, suffix: u8) -> [u8; REGION_KEY_LEN] {
    let mut key = [0; REGION_KEY_LEN];
    key[0] = LOCAL_PREFIX;
    key[1] = prefix;
    key[2..10].copy_from_slice(&region_id.to_be_bytes());
    key[10] = suffix;
    key
}

/// Key of raft log entry `index` of a region.
pub fn raft_log_key(region_id: u64, index: u64) -> [u8; RAFT_LOG_KEY_LEN] {
    let mut key = [0; RAFT_LOG_KEY_LEN];
    key[..REGION_KEY_LEN].copy_from_slice(&region_key(
        REGION_RAFT_PREFIX,
        region_id,
        RAFT_LOG_SUFFIX,
    ));
    key[REGION_KEY_LEN..].copy_from_slice(&index.to_be_bytes());
    key
}

/// Prefix shared by every log entry key of a region.
pub fn raft_log_prefix(region_id: u64) -> [u8; REGION_KEY_LEN] {
    region_key(REGION_RAFT_PREFIX, region_id, RAFT_LOG_SUFFIX)
}

/// Decodes a raft log key into `(region_id, index)`; `None` if `key` is not one.
pub fn decode_raft_log_key(key: &[u8]) -> Option<(u64, u64)> {
    if key.len() != RAFT_LOG_KEY_LEN
        || key[0] != LOCAL_PREFIX
        || key[1] != REGION_RAFT_PREFIX
        || key[10] != RAFT_LOG_SUFFIX
    {
        return None;
    }
    let region_id = u64::from_be_bytes(key[2..10].try_into().ok()?);
    let index = u64::from_be_bytes(key[11..].try_into().ok()?);
    Some((region_id, index))
}

/// Key of a region's `RaftLocalState`.
pub fn raft_state_key(region_id: u64) -> [u8; REGION_KEY_LEN] {
    region_key(REGION_RAFT_PREFIX, region_id, RAFT_STATE_SUFFIX)
}

/// Key of a region's `RaftApplyState`.
pub fn apply_state_key(region_id: u64) -> [u8; REGION_KEY_LEN] {
    region_key(REGION_RAFT_PREFIX, region_id, APPLY_STATE_SUFFIX)
}

/// Key of a region's `RegionLocalState`.
pub fn region_state_key(region_id: u64) -> [u8; REGION_KEY_LEN] {
    region_key(REGION_META_PREFIX, region_id, REGION_STATE_SUFFIX)
}

/// Decodes a region state key into its region id.
pub fn decode_region_state_key(key: &[u8]) -> Option<u64> {
    if key.len() != REGION_KEY_LEN
        || key[0] != LOCAL_PREFIX
        || key[1] != REGION_META_PREFIX
        || key[10] != REGION_STATE_SUFFIX
    {
        return None;
    }
    Some(u64::from_be_bytes(key[2..10].try_into().ok()?))
}

/// Encodes a user key as a data key.
pub fn data_key(key: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(key.len() + 1);
    v.push(DATA_PREFIX);
    v.extend_from_slice(key);
    v
}

/// Encodes a region's end key; the empty end key (+infinity) becomes [`DATA_MAX_KEY`].
pub fn data_end_key(region_end_key: &[u8]) -> Vec<u8> {
    if region_end_key.is_empty() {
        DATA_MAX_KEY.to_vec()
    } else {
        data_key(region_end_key)
    }
}

/// The user key of a data key; `None` if `key` is not a data key.
pub fn origin_key(key: &[u8]) -> Option<&[u8]> {
    key.strip_prefix(DATA_MIN_KEY)
}

/// Whether `key` is in the user-key range `[start, end)` (empty `end` is +infinity).
pub fn in_range(key: &[u8], start: &[u8], end: &[u8]) -> bool {
    key >= start && (end.is_empty() || key < end)
}

/// Printable form of a key for logs and error messages.
pub fn escape(key: &[u8]) -> String {
    key.iter().flat_map(|b| std::ascii::escape_default(*b)).map(char::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raft_log_keys_order_by_region_then_index() {
        let keys = [
            raft_log_key(1, 5).to_vec(),
            raft_log_key(1, 6).to_vec(),
            raft_log_key(1, 256).to_vec(),
            raft_state_key(1).to_vec(),
            apply_state_key(1).to_vec(),
            raft_log_key(2, 0).to_vec(),
            region_state_key(0).to_vec(),
            region_state_key(u64::MAX).to_vec(),
            data_key(b""),
            data_key(b"a"),
            DATA_MAX_KEY.to_vec(),
        ];
        for w in keys.windows(2) {
            assert!(w[0] < w[1], "{:?} !< {:?}", w[0], w[1]);
        }
        assert!(raft_log_key(3, u64::MAX).starts_with(&raft_log_prefix(3)));
    }

    #[test]
    fn decoding_round_trips_and_rejects_others() {
        assert_eq!(decode_raft_log_key(&raft_log_key(9, 77)), Some((9, 77)));
        assert_eq!(decode_raft_log_key(&raft_state_key(9)), None);
        assert_eq!(decode_raft_log_key(b"zabc"), None);
        assert_eq!(decode_region_state_key(&region_state_key(42)), Some(42));
        assert_eq!(decode_region_state_key(&apply_state_key(42)), None);
        assert_eq!(origin_key(&data_key(b"k1")), Some(&b"k1"[..]));
        assert_eq!(origin_key(&raft_state_key(1)), None);
        assert_eq!(data_end_key(b""), DATA_MAX_KEY);
        assert!(in_range(b"b", b"a", b""));
        assert!(!in_range(b"c", b"a", b"c"));
    }
}
