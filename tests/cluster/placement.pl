# Prints the server MR::IProto::Cluster picks for each key, so that the Rust side can compare.
# Input lines:
#   LIST <balance> <servers> <inactive>   a new cluster; <inactive> lists 0-based server
#                                         positions to mark inactive, comma-separated, or "-"
#   KEY <hex>                             prints "host:port" of the server for that key
use strict;
use warnings;
use MR::IProto::Cluster;

$| = 1;
my $cluster;
while (my $line = <STDIN>) {
    chomp $line;
    my ($cmd, @args) = split / /, $line;
    if ($cmd eq 'LIST') {
        my ($balance, $servers, $inactive) = @args;
        $cluster = MR::IProto::Cluster->new(servers => $servers, balance => $balance);
        if ($inactive ne '-') {
            $cluster->servers->[$_]->active(0) for split /,/, $inactive;
        }
        print "OK\n";
    } elsif ($cmd eq 'KEY') {
        my $key = defined $args[0] ? pack('H*', $args[0]) : '';
        my $server = $cluster->server($key);
        print $server->host, ':', $server->port, "\n";
    } else {
        die "unknown command $cmd";
    }
}
