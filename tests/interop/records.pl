#!/usr/bin/perl
# MR::IProto client for tests/interop.rs: sends records built with Perl pack templates (the way
# MR::IProto users build requests, through send's `pack` key) to our Rust server, which decodes
# them with #[derive(IprotoUnpack)] and answers with the same value encoded by
# #[derive(IprotoPack)]. Checks that the reply has exactly the request's bytes and unpacks
# to the same values. Keep the records in step with `perl_records()` in tests/interop.rs.
#
#   records.pl PORT      prints "OK <n> records"; dies on any difference
use strict;
use warnings;
use MR::IProto;

$| = 1;
my ($port) = @ARGV;
die "usage: $0 PORT\n" unless $port;

my $USER = 'L S w/a* w';                          # User { id, flags, name (ber), visits (ber) }
my $ORDER = "w C s< q< L/a* $USER L/L*";          # Order { id (ber), paid, delta, amount, note, owner, items }

my @users = (
    [1, 0, '', 0],
    [0xffffffff, 0xffff, 'Вася', 18446744073709551615],
    [258, 7, 'x' x 200, 300],
);
my @records = (
    (map { [0x31, $USER, @$_] } @users),
    [0x32, $ORDER, 0, 0, 0, 0, '', @{ $users[0] }],
    [0x32, $ORDER, 0xffffffff, 1, -1234, -1234567890123456, "\x00\xff note", @{ $users[1] }, 2, 200, 0xffffffff],
    [0x32, $ORDER, 16384, 1, 32767, -9223372036854775807 - 1, 'n' x 70_000, @{ $users[2] }, 0 .. 999],
);

my $client = MR::IProto->new(servers => "127.0.0.1:$port", timeout => 10);
for my $record (@records) {
    my ($msg, $template, @values) = @$record;
    my $reply = $client->send({ msg => $msg, data => [@values], pack => $template, unpack => sub { $_[0] // '' } })->[0];
    my $sent = pack($template, @values);
    die sprintf "msg %#x: our bytes %s, Rust replied %s\n", $msg, unpack('H*', substr($sent, 0, 64)),
        unpack('H*', substr($reply, 0, 64)) unless $reply eq $sent;
    my @back = unpack($template, $reply);
    die "msg $msg: unpacked @back[0 .. 3] instead of @values[0 .. 3]\n" unless "@back" eq "@values";
}
printf "OK %d records\n", scalar @records;
