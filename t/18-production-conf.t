#!/usr/bin/env perl
# conf/production.conf.example, run for real: TLS only, Basic
# authentication, and MKCOL/DELETE under /snapshots for the admin group.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Temp qw(tempdir);
use MirrorDAV::Test qw(slurp spew);

my $top = MirrorDAV::Test::top();
my $dir = tempdir('prod-conf-XXXXXX', TMPDIR => 1, CLEANUP => 1);
chmod 0755, $dir;
system("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 "
     . "-keyout $dir/key.pem -out $dir/cert.pem >/dev/null 2>&1") == 0 or die 'openssl';
system("htpasswd -cbB $dir/passwd alice alice-secret >/dev/null 2>&1") == 0 or die 'htpasswd';
system("htpasswd -bB $dir/passwd bob bob-secret >/dev/null 2>&1") == 0 or die 'htpasswd';
spew("$dir/groups", "admin: alice\n");
chmod 0644, "$dir/key.pem", "$dir/passwd", "$dir/groups";

my $port = MirrorDAV::Test::free_port();
chomp(my $md = `apxs -q LIBEXECDIR` || '/usr/lib/apache2/modules');
my %v = (PORT => $port, ADDR => '127.0.0.1', SERVER_NAME => '127.0.0.1',
         CERT => "$dir/cert.pem", KEY => "$dir/key.pem", VOLUME => "$dir/volume",
         PASSWD => "$dir/passwd", GROUPS => "$dir/groups");
(my $site = slurp("$top/conf/production.conf.example")) =~ s/\@(\w+)\@/$v{$1} \/\/ die "placeholder $1"/ge;
my $load = join '', map { "LoadModule ${_}_module $md/mod_$_.so\n" }
    qw(ssl socache_shmcb auth_basic authn_core authn_file authz_user authz_groupfile);

my $s = MirrorDAV::Test->start_server(volume => "$dir/volume", conf_extra => $load . $site);
my $url = "https://127.0.0.1:$port";

sub curl {
    my ($args) = @_;
    my $out = `curl -sk -o $dir/body -w '%{http_code}' $args`;
    return ($out, slurp("$dir/body") // '');
}

my ($code) = curl("$url/dav/");
is $code, 401, 'without credentials: 401';
($code) = curl("-u alice:wrong $url/dav/");
is $code, 401, 'with a wrong password: 401';
spew("$dir/f.txt", "over TLS\n");
($code) = curl("-u alice:alice-secret -T $dir/f.txt $url/dav/f.txt");
is $code, 201, 'alice PUTs over TLS: 201';
(my $got, my $body) = curl("-u bob:bob-secret $url/dav/f.txt");
is $got, 200, 'bob GETs it';
is $body, "over TLS\n", '... byte for byte';
($code) = curl("-u bob:bob-secret -X PROPFIND -H 'Depth: 1' $url/dav/");
is $code, 207, 'PROPFIND works for any valid user';
my $plain = `curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$port/dav/`;
is $plain, 400, 'plain HTTP on the TLS port is refused';
is slurp("$dir/volume/live/f.txt"), "over TLS\n", 'the file is in the live tree';

# Snapshot creation and deletion: admin group only.
($code) = curl("-u bob:bob-secret -X MKCOL $url/snapshots/nightly");
is $code, 401, 'bob (not admin) may not MKCOL under /snapshots';
($code) = curl("-u bob:bob-secret -X DELETE $url/snapshots/nightly");
is $code, 401, 'nor DELETE there';
($code) = curl("-u alice:alice-secret -X MKCOL $url/snapshots/nightly");
isnt $code, 401, "alice (admin) passes authorisation for MKCOL ($code)";
($code) = curl("-u bob:bob-secret $url/snapshots/");
isnt $code, 401, "bob may browse /snapshots/ ($code)";

done_testing;
