#!/usr/bin/perl
# MR::IProto client for tests/interop.rs, run against our Rust server, whose handler replies
# with pack('L', $msg) . reverse($body).
#
#   client.pl PORT sync|async check      every code x size, then 1000 mixed calls; replies checked
#   client.pl PORT sync|async bench N    N calls with 32-byte bodies; prints "RATE <calls/s>"
#
# The async mode keeps 16 requests in flight. Dies (non-zero exit) on any wrong reply or error.
use strict;
use warnings;
use AnyEvent;
use MR::IProto;
use Time::HiRes ();

$| = 1;
my ($port, $mode, $what, $count) = @ARGV;
die "usage: $0 PORT sync|async check|bench [N]\n"
    unless $port && ($mode // '') =~ /^(?:sync|async)$/ && ($what // '') =~ /^(?:check|bench)$/;

my $IN_FLIGHT = 16;
my @CODES = (0, 1, 17, 0xfeff);
my @SIZES = (0, 1, 5, 1_000, 70_000, 1_000_000);

# max_parallel (default 10) caps the requests one async connection keeps in flight.
my $client = MR::IProto->new(
    cluster => MR::IProto::Cluster->new(
        servers => [
            MR::IProto::Cluster::Server->new(
                host         => '127.0.0.1',
                port         => $port,
                timeout      => 10,
                max_parallel => $IN_FLIGHT,
            ),
        ],
    ),
);

srand(42);
my $noise = pack('C*', map { int rand 256 } 1 .. 4096);
my $pool = $noise x (1 + int(1_000_000 / length $noise));

# [msg, body] pairs to send.
my @calls;
if ($what eq 'check') {
    for my $msg (@CODES) {
        push @calls, [$msg, substr($pool, $msg % 1000, $_)] for @SIZES;
    }
    push @calls, [$CODES[$_ % @CODES], substr($pool, $_, $_ % 300)] for 1 .. 1000;
} else {
    die "bench needs a call count\n" unless $count;
    push @calls, [17, substr($pool, 0, 32)] for 1 .. $count;
}

sub request {
    my ($msg, $body) = @_;
    return { msg => $msg, data => $body, unpack => sub { $_[0] // '' } };
}

sub check {
    my ($call, $reply) = @_;
    my ($msg, $body) = @$call;
    my $want = pack('L', $msg) . reverse($body);
    return if $reply eq $want;
    die sprintf "msg %#x, %d-byte body: wrong reply of %d bytes\n", $msg, length $body, length $reply;
}

my $start = Time::HiRes::time();
if ($mode eq 'sync') {
    for my $call (@calls) {
        my $reply = $client->send(request(@$call));
        check($call, $reply->[0]);
    }
} else {
    my $done = AnyEvent->condvar;
    my ($next, $open, $failed) = (0, 0, undef);
    my $send_next;
    $send_next = sub {
        while ($open < $IN_FLIGHT && $next < @calls && !$failed) {
            my $call = $calls[$next++];
            $open++;
            $client->send(request(@$call), sub {
                my ($reply, $error) = @_;
                $open--;
                $failed //= $error ? "msg $call->[0]: $error" : (eval { check($call, $reply->[0]); 1 } ? undef : $@);
                $send_next->();
            });
        }
        $done->send if $open == 0 && ($failed || $next == @calls);
    };
    $send_next->();
    $done->recv;
    undef $send_next;
    die $failed if $failed;
}
my $elapsed = Time::HiRes::time() - $start;

if ($what eq 'check') {
    printf "OK %d calls\n", scalar @calls;
} else {
    printf "RATE %.0f\n", @calls / $elapsed;
}
