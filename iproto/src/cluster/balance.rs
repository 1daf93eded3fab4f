//! Balancing: which server of a list takes a call. The [`Balancer`] trait, and the built-in
//! modes: `round-robin`, MR::IProto's `hash-crc32` and `ketama` (placement equal to the Perl
//! module's), and `consistent`, our own weighted ring.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use super::list::{ClusterError, ServerList};
use crate::shard::PerShard;

/// Picks a server for a call. `usable(i)` says whether server `i` of the list (in list order)
/// may take it: it is up and this call has not tried it yet. A balancer returns `Ok(None)`
/// when no usable server remains, and [`ClusterError::KeyRequired`] when it needs a key and
/// got none.
pub trait Balancer: Send + Sync {
    /// The index of the server for a call with `key`.
    fn pick(&self, key: Option<&[u8]>, usable: &dyn Fn(usize) -> bool) -> Result<Option<usize>, ClusterError>;
}

/// Builds a [`Balancer`] for a list; called again whenever the list changes.
pub type BalancerFactory = Arc<dyn Fn(&ServerList) -> Box<dyn Balancer> + Send + Sync>;

/// A balancing mode, by MR::IProto's names (`FromStr`: `round-robin`, `hash-crc32`, `ketama`,
/// plus our `consistent`).
#[derive(Clone, Default)]
pub enum Balance {
    /// Rotation over the servers, each taking `weight` calls in turn; the turns of servers
    /// down pass to the next turn, so the others share them evenly.
    /// Keys are ignored. (MR::IProto's "round-robin" draws at random without replacement and
    /// ignores weights.)
    #[default]
    RoundRobin,
    /// MR::IProto's `_balance_hash`: `crc32(key) >> 16` modulo the weight-expanded list, then
    /// up to 20 rehash probes past servers that are down; after them (where Perl picks at
    /// random) the next usable server in list order.
    HashCrc32,
    /// MR::IProto's `_balance_ketama`: 11 points per server at `crc32(host . port . i)`
    /// (weights ignored, as in Perl), sorted as decimal strings; a key goes to the first point
    /// in that order numerically at or above `crc32(key)`, else to the first point. A server
    /// that is down is skipped by going on in the same order (Perl does not skip it).
    Ketama,
    /// Our ring: 160 points per unit of weight, in numeric order; a key goes to the first
    /// point at or after its position, and on around the ring past servers that are down.
    /// Adding one of N servers moves about 1/N of the keys; removing one moves only its keys.
    Consistent,
    /// A custom balancer, rebuilt from each list.
    Custom(BalancerFactory),
}

impl Balance {
    /// The mode's name as the command line and MR::IProto spell it.
    pub fn name(&self) -> &'static str {
        match self {
            Balance::RoundRobin => "round-robin",
            Balance::HashCrc32 => "hash-crc32",
            Balance::Ketama => "ketama",
            Balance::Consistent => "consistent",
            Balance::Custom(_) => "custom",
        }
    }

    /// Whether calls need a key (the built-in keyed modes).
    pub fn is_keyed(&self) -> bool {
        matches!(self, Balance::HashCrc32 | Balance::Ketama | Balance::Consistent)
    }

    /// The balancer of this mode for `list`.
    pub fn build(&self, list: &ServerList) -> Box<dyn Balancer> {
        match self {
            Balance::RoundRobin => Box::new(RoundRobin::new(list)),
            Balance::HashCrc32 => Box::new(HashCrc32::new(list)),
            Balance::Ketama => Box::new(Ketama::new(list)),
            Balance::Consistent => Box::new(Consistent::new(list)),
            Balance::Custom(factory) => factory(list),
        }
    }
}

impl fmt::Debug for Balance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Balance {
    type Err = ClusterError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "round-robin" => Ok(Balance::RoundRobin),
            "hash-crc32" => Ok(Balance::HashCrc32),
            "ketama" => Ok(Balance::Ketama),
            "consistent" => Ok(Balance::Consistent),
            other => Err(ClusterError::UnknownBalance(other.to_owned())),
        }
    }
}

/// CRC-32 (IEEE, as Perl's Digest::CRC `crc32` and zlib compute it), continuing from `init`
/// like Digest::CRC's `crc32($data, $init)`.
pub(crate) fn crc32(init: u32, data: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new_with_initial(init);
    h.update(data);
    h.finalize()
}

/// Cumulative weights: the weight-expanded list (server `i` repeated `weight` times) without
/// expanding it.
struct Weights {
    ends: Vec<u64>,
}

impl Weights {
    fn new(list: &ServerList) -> Self {
        let mut end = 0;
        let ends = list.servers().iter().map(|s| {
            end += u64::from(s.weight);
            end
        });
        Weights { ends: ends.collect() }
    }

    fn total(&self) -> u64 {
        self.ends.last().copied().unwrap_or(0)
    }

    /// The server at `slot` of the expanded list (`slot < total`).
    fn server(&self, slot: u64) -> usize {
        self.ends.partition_point(|&end| end <= slot)
    }

    /// The first usable server from `start` on, in list order, wrapping.
    fn next_usable(&self, start: usize, usable: &dyn Fn(usize) -> bool) -> Option<usize> {
        let n = self.ends.len();
        (0..n).map(|i| (start + i) % n).find(|&i| usable(i))
    }
}

fn need_key<'k>(key: Option<&'k [u8]>, balance: &'static str) -> Result<&'k [u8], ClusterError> {
    key.ok_or(ClusterError::KeyRequired { balance })
}

/// [`Balance::RoundRobin`].
struct RoundRobin {
    weights: Weights,
    /// The rotation: one per thread shard, so that callers on different threads do not
    /// share a cache line (each shard rotates over every server, from its own start).
    next: PerShard<AtomicUsize>,
}

impl RoundRobin {
    fn new(list: &ServerList) -> Self {
        let mut start = 0;
        let next = PerShard::new(|| {
            start += 1;
            AtomicUsize::new(start - 1)
        });
        RoundRobin { weights: Weights::new(list), next }
    }
}

impl Balancer for RoundRobin {
    fn pick(&self, _key: Option<&[u8]>, usable: &dyn Fn(usize) -> bool) -> Result<Option<usize>, ClusterError> {
        let total = self.weights.total();
        if total == 0 {
            return Ok(None);
        }
        // A plain load and store, not a read-modify-write: the shard is this thread's, and
        // should two threads share it, a turn given twice does no harm. The slot is kept
        // below `total`, so no division either.
        let next = self.next.mine();
        let mut slot = next.load(Relaxed) as u64;
        if slot >= total {
            slot %= total;
        }
        let wrap = |slot: u64| if slot >= total { 0 } else { slot };
        for _ in 0..self.weights.ends.len() {
            let server = self.weights.server(slot);
            if usable(server) {
                next.store(wrap(slot + 1) as usize, Relaxed);
                return Ok(Some(server));
            }
            // The turn of a server down passes to the next turn, not to its neighbour (which
            // would take twice its share): skip the rest of its slots.
            slot = wrap(self.weights.ends[server]);
            next.store(slot as usize, Relaxed);
        }
        Ok(self.weights.next_usable(0, usable))
    }
}

/// [`Balance::HashCrc32`].
struct HashCrc32 {
    weights: Weights,
}

impl HashCrc32 {
    fn new(list: &ServerList) -> Self {
        HashCrc32 { weights: Weights::new(list) }
    }
}

impl Balancer for HashCrc32 {
    fn pick(&self, key: Option<&[u8]>, usable: &dyn Fn(usize) -> bool) -> Result<Option<usize>, ClusterError> {
        let key = need_key(key, "hash-crc32")?;
        let total = self.weights.total();
        let first = crc32(0, key) >> 16;
        let mut hash = u64::from(first);
        for i in 0..20u32 {
            let server = self.weights.server(hash % total);
            if usable(server) {
                return Ok(Some(server));
            }
            // Perl: `$hash += crc32($_, $hash_) >> 16`, `$_` the probe number as a string.
            hash += u64::from(crc32(first, i.to_string().as_bytes()) >> 16);
        }
        Ok(self.weights.next_usable(self.weights.server(hash % total), usable))
    }
}

/// [`Balance::Ketama`].
struct Ketama {
    /// (point, server), sorted by the point's decimal string, stably (Perl's sort is a stable
    /// merge sort).
    points: Vec<(u32, usize)>,
    /// Positions in `points` whose value is above every earlier one ("records"), with their
    /// values, increasing: the first point in string order that is numerically >= x is the
    /// first record >= x, so a binary search finds what Perl's linear scan finds.
    records: Vec<(u32, usize)>,
}

impl Ketama {
    fn new(list: &ServerList) -> Self {
        let mut points: Vec<(String, u32, usize)> = Vec::with_capacity(list.len() * 11);
        for (server, spec) in list.servers().iter().enumerate() {
            let name = spec.ketama_name();
            for i in 0..=10 {
                let point = crc32(0, format!("{name}{i}").as_bytes());
                points.push((point.to_string(), point, server));
            }
        }
        points.sort_by(|a, b| a.0.cmp(&b.0));
        let points: Vec<(u32, usize)> = points.into_iter().map(|(_, p, s)| (p, s)).collect();
        let mut records: Vec<(u32, usize)> = Vec::new();
        for (pos, &(point, _)) in points.iter().enumerate() {
            if records.last().is_none_or(|&(max, _)| point > max) {
                records.push((point, pos));
            }
        }
        Ketama { points, records }
    }
}

impl Balancer for Ketama {
    fn pick(&self, key: Option<&[u8]>, usable: &dyn Fn(usize) -> bool) -> Result<Option<usize>, ClusterError> {
        let idx = crc32(0, need_key(key, "ketama")?);
        let start = self.records.get(self.records.partition_point(|&(v, _)| v < idx)).map_or(0, |&(_, pos)| pos);
        let n = self.points.len();
        Ok((0..n).map(|i| self.points[(start + i) % n].1).find(|&s| usable(s)))
    }
}

/// Points per unit of weight on the [`Balance::Consistent`] ring (libmemcached's ketama uses
/// 160 too): about 8% standard deviation of a server's share.
const POINTS_PER_WEIGHT: u32 = 160;

/// murmur3's 32-bit finaliser: spreads CRC-32's linear structure over the ring.
fn mix(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// Where a key sits on the [`Balance::Consistent`] ring.
pub(crate) fn ring_position(key: &[u8]) -> u32 {
    mix(crc32(0, key))
}

/// [`Balance::Consistent`].
struct Consistent {
    /// (position, server address, server), sorted by position then address: the order does
    /// not depend on the list's order, so servers keep their keys when others come and go.
    ring: Vec<(u32, usize)>,
}

impl Consistent {
    fn new(list: &ServerList) -> Self {
        let mut ring: Vec<(u32, String, usize)> = Vec::new();
        for (server, spec) in list.servers().iter().enumerate() {
            let addr = spec.addr.to_string();
            for i in 0..spec.weight * POINTS_PER_WEIGHT {
                ring.push((ring_position(format!("{addr}-{i}").as_bytes()), addr.clone(), server));
            }
        }
        ring.sort_unstable_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        Consistent { ring: ring.into_iter().map(|(p, _, s)| (p, s)).collect() }
    }
}

impl Balancer for Consistent {
    fn pick(&self, key: Option<&[u8]>, usable: &dyn Fn(usize) -> bool) -> Result<Option<usize>, ClusterError> {
        let pos = ring_position(need_key(key, "consistent")?);
        let n = self.ring.len();
        let start = self.ring.partition_point(|&(p, _)| p < pos);
        Ok((0..n).map(|i| self.ring[(start + i) % n].1).find(|&s| usable(s)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(_: usize) -> bool {
        true
    }

    fn list(s: &str) -> ServerList {
        ServerList::parse(s).unwrap()
    }

    #[test]
    fn crc32_continues_like_digest_crc() {
        // Values printed by Perl: crc32("hello"), crc32("0", 1234).
        assert_eq!(crc32(0, b"hello"), 907_060_870);
        assert_eq!(crc32(1234, b"0"), 2_617_666_781);
    }

    #[test]
    fn keyed_modes_refuse_a_call_without_a_key() {
        for balance in [Balance::HashCrc32, Balance::Ketama, Balance::Consistent] {
            let err = balance.build(&list("a:1,b:2")).pick(None, &all).unwrap_err();
            assert_eq!(err, ClusterError::KeyRequired { balance: balance.name() });
        }
    }

    #[test]
    fn round_robin_rotates_by_weight_and_skips_servers_down() {
        let rr = Balance::RoundRobin.build(&list("a:1,b:2:2,c:3"));
        let picks: Vec<usize> = (0..8).map(|_| rr.pick(None, &all).unwrap().unwrap()).collect();
        assert_eq!(picks, [0, 1, 1, 2, 0, 1, 1, 2]);
        let picks: Vec<usize> = (0..4).map(|_| rr.pick(None, &|i| i != 1).unwrap().unwrap()).collect();
        assert_eq!(picks, [0, 2, 0, 2], "the turns of a server down are shared, not given to its neighbour");
        assert_eq!(rr.pick(None, &|_| false).unwrap(), None);
    }

    #[test]
    fn ketama_records_find_what_a_linear_scan_finds() {
        let k = Ketama::new(&list("10.0.0.1:3301,10.0.0.2:3301,10.0.0.3:3302,h:1"));
        for probe in (0..u32::MAX).step_by(7_919_993).chain([0, u32::MAX]) {
            let linear = k.points.iter().find(|p| p.0 >= probe).unwrap_or(&k.points[0]).1;
            let key_free = k.records.get(k.records.partition_point(|&(v, _)| v < probe)).map_or(0, |r| r.1);
            assert_eq!(k.points[key_free].1, linear, "point {probe}");
        }
    }

    #[test]
    fn keyed_modes_probe_past_servers_down_deterministically() {
        for balance in [Balance::HashCrc32, Balance::Ketama, Balance::Consistent] {
            let b = balance.build(&list("a:1,b:2,c:3,d:4"));
            for key in 0..200u32 {
                let key = key.to_string();
                let owner = b.pick(Some(key.as_bytes()), &all).unwrap().unwrap();
                let other = b.pick(Some(key.as_bytes()), &|i| i != owner).unwrap().unwrap();
                assert_ne!(other, owner, "{balance:?}");
                assert_eq!(b.pick(Some(key.as_bytes()), &|i| i != owner).unwrap(), Some(other));
                assert_eq!(b.pick(Some(key.as_bytes()), &|_| false).unwrap(), None);
            }
        }
    }
}

#[cfg(test)]
mod ring_tests {
    use proptest::prelude::*;

    use super::*;
    use crate::cluster::list::ServerSpec;

    fn owners(list: &ServerList, keys: &[String]) -> Vec<String> {
        let ring = Balance::Consistent.build(list);
        keys.iter()
            .map(|k| list.servers()[ring.pick(Some(k.as_bytes()), &|_| true).unwrap().unwrap()].addr.to_string())
            .collect()
    }

    fn servers(n: usize, base: u16) -> Vec<ServerSpec> {
        (0..n).map(|i| ServerSpec::tcp(format!("10.1.{}.{}", i / 200, i % 200), base + i as u16)).collect()
    }

    /// The spread the docs quote: 10 000 keys over 10 servers of weight 1.
    #[test]
    fn ring_spreads_keys_evenly() {
        let list = ServerList::new(servers(10, 3301)).unwrap();
        let keys: Vec<String> = (0..10_000).map(|i| format!("key:{i}")).collect();
        let owners = owners(&list, &keys);
        let counts: Vec<usize> =
            list.servers().iter().map(|s| owners.iter().filter(|o| **o == s.addr.to_string()).count()).collect();
        eprintln!("consistent: 10 000 keys over 10 servers: {counts:?}");
        assert!(counts.iter().all(|&c| (750..=1250).contains(&c)), "{counts:?}");
        let eleven = ServerList::new(servers(11, 3301)).unwrap();
        let moved = owners.iter().zip(self::owners(&eleven, &keys)).filter(|(a, b)| **a != *b).count();
        eprintln!("consistent: adding an 11th server moves {moved} of 10 000 keys");
        assert!((500..=1400).contains(&moved), "{moved}");
    }

    #[test]
    fn ring_honours_weights() {
        let mut specs = servers(4, 3301);
        specs[0].weight = 3;
        let list = ServerList::new(specs).unwrap();
        let keys: Vec<String> = (0..12_000).map(|i| format!("key:{i}")).collect();
        let heavy = owners(&list, &keys).iter().filter(|o| **o == list.servers()[0].addr.to_string()).count();
        // weight 3 of 6: half the keys.
        assert!((5_000..=7_000).contains(&heavy), "{heavy}");
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        #[test]
        fn adding_a_server_moves_about_its_share_and_only_to_it(n in 2usize..12, base in 1000u16..60000, salt in 0u32..1000) {
            let keys: Vec<String> = (0..3000).map(|i| format!("{salt}:{i}")).collect();
            let before = ServerList::new(servers(n, base)).unwrap();
            let after = ServerList::new(servers(n + 1, base)).unwrap();
            let added = after.servers()[n].addr.to_string();
            let (a, b) = (owners(&before, &keys), owners(&after, &keys));
            let moved: Vec<usize> = (0..keys.len()).filter(|&i| a[i] != b[i]).collect();
            prop_assert!(moved.iter().all(|&i| b[i] == added), "a key moved between old servers");
            let share = moved.len() as f64 / keys.len() as f64;
            let ideal = 1.0 / (n + 1) as f64;
            prop_assert!(share > ideal * 0.5 && share < ideal * 1.6, "moved {share:.3}, ideal {ideal:.3}");
        }

        #[test]
        fn removing_a_server_moves_only_its_keys(n in 3usize..12, gone in 0usize..12, base in 1000u16..60000) {
            let gone = gone % n;
            let keys: Vec<String> = (0..3000).map(|i| format!("k{i}")).collect();
            let all = servers(n, base);
            let before = ServerList::new(all.clone()).unwrap();
            let mut rest = all;
            let removed = rest.remove(gone).addr.to_string();
            let after = ServerList::new(rest).unwrap();
            let (a, b) = (owners(&before, &keys), owners(&after, &keys));
            for i in 0..keys.len() {
                prop_assert!(a[i] == b[i] || a[i] == removed, "key {} moved from {} to {}", keys[i], a[i], b[i]);
            }
        }
    }
}
