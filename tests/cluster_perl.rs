//! Placement equal to Perl's MR::IProto::Cluster, checked against the module itself: for
//! several server lists (weights included), `hash-crc32` and `ketama` balancers pick the same
//! server as `MR::IProto::Cluster->new(servers => ..., balance => ...)->server($key)` for
//! thousands of random keys each, every pick compared. `hash-crc32` is also compared with
//! servers marked inactive in Perl and down here: both probe past them the same way.
//!
//! The Perl half is `tests/cluster/placement.pl`. Without a working `perl -MMR::IProto::Cluster`
//! the peer harness reports these tests as skipped with the reason (failed under `CI`).

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use iproto::cluster::{Balance, ServerList};

#[path = "support/harness.rs"]
mod harness;

/// Keys per list and mode.
const KEYS: usize = 5000;

/// Lists in MR::IProto's form: plain, weighted, many servers, two, one.
const LISTS: [&str; 5] = [
    "10.0.0.1:3301,10.0.0.2:3301,10.0.0.3:3301",
    "a.example:1000:3,b.example:1001,c.example:1002:2,d.example:1003:5",
    "127.0.0.1:4000,127.0.0.1:4001:2,127.0.0.1:4002,127.0.0.1:4003:4,127.0.0.1:4004,\
     127.0.0.1:4005:3,127.0.0.1:4006,127.0.0.1:4007,127.0.0.1:4008:7,127.0.0.1:4009",
    "db1:33013,db2:33013",
    "solo:1",
];

fn main() {
    let peer =
        harness::perl_module("MR::IProto::Cluster").map_err(|why| format!("{why} (install libmr-tarantool-perl)"));
    let mut trials = Vec::new();
    for (n, list) in LISTS.iter().enumerate() {
        for mode in ["hash-crc32", "ketama"] {
            trials.push(libtest_mimic::Trial::test(format!("{mode}_places_keys_as_perl_does_list_{n}"), move || {
                compare(mode, list, &[]);
                Ok(())
            }));
        }
    }
    trials.push(harness::trial("hash_crc32_probes_past_inactive_servers_as_perl_does", || {
        compare("hash-crc32", LISTS[1], &[3]);
        compare("hash-crc32", LISTS[2], &[0, 8]);
        compare("hash-crc32", LISTS[0], &[1]);
    }));
    harness::run(peer, trials);
}

/// A deterministic source of test keys (splitmix64).
struct Keys(u64);

impl Keys {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Random bytes of 0..40 bytes, printable keys like `user:123`, and decimal numbers.
    fn key(&mut self) -> Vec<u8> {
        let r = self.next_u64();
        match r % 3 {
            0 => (0..(r >> 8) % 40).map(|_| self.next_u64() as u8).collect(),
            1 => format!("user:{}", (r >> 8) % 1_000_000).into_bytes(),
            _ => ((r >> 8) % 100_000_000).to_string().into_bytes(),
        }
    }
}

/// Sends `KEYS` keys through Perl and through our balancer for `list` with the servers at
/// `inactive` down, and asserts every pick is the same.
fn compare(mode: &str, list: &str, inactive: &[usize]) {
    let servers = ServerList::parse(list).expect("the test's list parses");
    let balancer = mode.parse::<Balance>().expect("a known mode").build(&servers);
    let mut keys = Keys(list.len() as u64 * 31 + mode.len() as u64);
    let keys: Vec<Vec<u8>> = (0..KEYS).map(|_| keys.key()).collect();

    let mut script = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    script.push_str("/tests/cluster/placement.pl");
    let mut perl = Command::new(harness::perl_binary())
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("perl starts");
    let mut input = String::new();
    let inactive_arg = if inactive.is_empty() {
        "-".to_owned()
    } else {
        inactive.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(",")
    };
    input.push_str(&format!("LIST {mode} {list} {inactive_arg}\n"));
    for key in &keys {
        input.push_str(&format!("KEY {}\n", hex::encode(key)));
    }
    let mut stdin = perl.stdin.take().expect("piped stdin");
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let lines: Vec<String> = BufReader::new(perl.stdout.take().expect("piped stdout"))
        .lines()
        .collect::<Result<_, _>>()
        .expect("perl's output is text");
    writer.join().expect("writer thread").expect("perl reads its input");
    assert!(perl.wait().expect("perl exits").success(), "placement.pl failed");
    assert_eq!(lines.len(), KEYS + 1, "one line per key after OK: {:?}", lines.first());
    assert_eq!(lines[0], "OK");

    let usable = |i: usize| !inactive.contains(&i);
    let mut compared = 0;
    for (key, perl_pick) in keys.iter().zip(&lines[1..]) {
        let ours = balancer.pick(Some(key), &usable).expect("a key is given").expect("a server is usable");
        let ours = servers.servers()[ours].addr.to_string();
        assert_eq!(&ours, perl_pick, "{mode} over {list} (inactive {inactive:?}), key {}", hex::encode(key));
        compared += 1;
    }
    eprintln!(
        "{mode} over {} servers (inactive {inactive:?}): {compared} keys placed as Perl places them",
        servers.len()
    );
}
