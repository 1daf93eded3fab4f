//! Cross-checks against Perl's own `pack`, the reference MR::IProto builds on: BER integers
//! against `pack 'w'`, and a derived struct against a `pack` template, in both directions. One
//! perl process per batch reads lines on stdin and prints hex.
//!
//! Without `perl` (or with `IPROTO_PERL` pointing elsewhere) the peer harness reports the tests
//! as skipped with the reason; with `CI` set they fail instead.

use std::io::Write;
use std::process::Stdio;

use iproto::{IprotoPack, IprotoUnpack};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};

#[path = "../../tests/support/harness.rs"]
mod harness;

fn main() {
    // Only perl itself is needed: `pack` is core Perl.
    harness::run(
        harness::perl_module("strict"),
        vec![
            harness::trial("ber_matches_perl_pack_w", ber_matches_perl_pack_w),
            harness::trial("derived_struct_matches_perl_template", derived_struct_matches_perl_template),
        ],
    )
}

/// Runs `perl -e script` with `input` on stdin and returns its stdout.
fn perl(script: &str, input: &str) -> String {
    let mut child = harness::perl_command()
        .args(["-e", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", harness::perl_binary()));
    // Feed stdin from a thread so a large batch cannot deadlock against a full stdout pipe.
    let mut stdin = child.stdin.take().expect("piped stdin");
    let input = input.to_owned();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().expect("perl output");
    writer.join().expect("writer thread").expect("write to perl");
    assert!(out.status.success(), "perl failed: {}", out.status);
    String::from_utf8(out.stdout).expect("perl prints ASCII")
}

/// Values of every BER length: random bits shifted down by a random amount.
fn ber_values(n: usize) -> Vec<u64> {
    let mut runner = TestRunner::new(Config::default());
    let strategy = prop::collection::vec(
        prop_oneof![
            (any::<u64>(), 0u32..64).prop_map(|(v, s)| v >> s),
            // Group boundaries: 2^(7k) - 1 and 2^(7k).
            (1u32..=9).prop_flat_map(|k| prop_oneof![Just((1u64 << (7 * k)) - 1), Just(1u64 << (7 * k))]),
            Just(0u64),
            Just(u64::MAX),
        ],
        n,
    );
    strategy.new_tree(&mut runner).expect("generate values").current()
}

fn ber_matches_perl_pack_w() {
    // Our BER is Perl's `pack 'w'`, both ways, for thousands of values.
    let values = ber_values(5000);
    let input: String = values.iter().map(|v| format!("{v}\n")).collect();
    let script = r#"while (my $n = <STDIN>) { chomp $n; print unpack("H*", pack("w", $n)), "\n" }"#;
    let out = perl(script, &input);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), values.len());
    for (v, perl_hex) in values.iter().zip(&lines) {
        let ours = iproto::pack_ber(v).unwrap();
        assert_eq!(hex::encode(&ours), *perl_hex, "pack 'w' of {v}");
        let perl_bytes = hex::decode(perl_hex).unwrap();
        assert_eq!(iproto::unpack_exact_ber::<u64>(&perl_bytes).unwrap(), *v);
    }

    // And Perl decodes what we encode.
    let input: String = values.iter().map(|v| format!("{}\n", hex::encode(iproto::pack_ber(v).unwrap()))).collect();
    let script = r#"while (my $h = <STDIN>) { chomp $h; print unpack("w", pack("H*", $h)), "\n" }"#;
    let out = perl(script, &input);
    let decoded: Vec<u64> = out.lines().map(|l| l.parse().expect("decimal")).collect();
    assert_eq!(decoded, values);
}

/// Matches the Perl template `L< S< w/a* w C`.
#[derive(IprotoPack, IprotoUnpack, Debug, PartialEq, Clone)]
struct Record {
    id: u32,
    kind: u16,
    #[iproto(ber)]
    name: String,
    #[iproto(ber)]
    counter: u64,
    flag: u8,
}

const TEMPLATE: &str = "L< S< w/a* w C";

fn records(n: usize) -> Vec<Record> {
    let mut runner = TestRunner::new(Config::default());
    let record = (any::<u32>(), any::<u16>(), ".{0,40}", any::<u64>(), any::<u8>())
        .prop_map(|(id, kind, name, counter, flag)| Record { id, kind, name, counter, flag });
    prop::collection::vec(record, n).new_tree(&mut runner).expect("generate records").current()
}

fn derived_struct_matches_perl_template() {
    let recs = records(1000);
    // Perl packs each record; the name travels as hex so any UTF-8 survives the line format.
    let input: String = recs
        .iter()
        .map(|r| format!("{} {} {} {} {}\n", r.id, r.kind, hex::encode(&r.name), r.counter, r.flag))
        .collect();
    let script = format!(
        r#"while (my $l = <STDIN>) {{ chomp $l; my ($id, $kind, $name, $c, $f) = split / /, $l, 5;
           $name = pack("H*", $name);
           print unpack("H*", pack("{TEMPLATE}", $id, $kind, $name, $c, $f)), "\n" }}"#
    );
    let out = perl(&script, &input);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), recs.len());
    for (r, perl_hex) in recs.iter().zip(&lines) {
        assert_eq!(hex::encode(iproto::pack(r).unwrap()), *perl_hex, "{r:?}");
        let back: Record = iproto::unpack_exact(&hex::decode(perl_hex).unwrap()).unwrap();
        assert_eq!(&back, r);
    }

    // Perl unpacks what we pack, field by field.
    let input: String = recs.iter().map(|r| format!("{}\n", hex::encode(iproto::pack(r).unwrap()))).collect();
    let script = format!(
        r#"while (my $h = <STDIN>) {{ chomp $h; my @f = unpack("{TEMPLATE}", pack("H*", $h));
           $f[2] = unpack("H*", $f[2]); print join(" ", @f), "\n" }}"#
    );
    let out = perl(&script, &input);
    let want: Vec<String> =
        recs.iter().map(|r| format!("{} {} {} {} {}", r.id, r.kind, hex::encode(&r.name), r.counter, r.flag)).collect();
    assert_eq!(out.lines().collect::<Vec<_>>(), want);
}
