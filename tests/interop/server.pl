#!/usr/bin/perl
# MR::IProto::Server for tests/interop.rs: answers every packet (pings and shutdowns too,
# as this server does) with pack('L', $msg) . reverse($body), so the client can tell that
# the whole body arrived in order. Listens on 127.0.0.1, any free port, prints "PORT <n>"
# once listening, and exits when stdin closes (the test process went away).
use strict;
use warnings;
use AnyEvent;
use AnyEvent::Socket ();
use MR::IProto::Server;

$| = 1;

# MR::IProto::Server cannot report the port it bound when asked for port 0, so wrap the
# tcp_server it imported and give it a prepare callback that records the port.
my $bound;
{
    no warnings 'redefine';
    my $tcp_server = \&AnyEvent::Socket::tcp_server;
    *MR::IProto::Server::tcp_server = sub ($$$;$) {
        my ($host, $port, $accept) = @_;
        return $tcp_server->($host, $port, $accept, sub { $bound = $_[2]; return 0 });
    };
}

my $server = MR::IProto::Server->new(
    host      => '127.0.0.1',
    port      => 0,
    # The server passes these to every connection, whose constructor insists on code refs.
    on_accept => sub { },
    on_error  => sub { my ($connection, $message) = @_; warn "connection error: $message\n" },
    handler   => sub {
        my ($connection, $msg, $body) = @_;
        return pack('L', $msg) . reverse($body);
    },
);
$server->run;
die "server did not report its port\n" unless $bound;
print "PORT $bound\n";

my $done = AnyEvent->condvar;
my $stdin = AnyEvent->io(fh => \*STDIN, poll => 'r', cb => sub {
    $done->send if !sysread(STDIN, my $buf, 4096);
});
$done->recv;
