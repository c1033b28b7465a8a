#!/usr/bin/env perl
# conf/production.conf.example, run for real: TLS only, Basic
# authentication, MKCOL/DELETE under /snapshots for the admin group, and
# writes to the live tree (the browser's restore included) for the writers
# group: a read-only user sees the versions page without a restore form,
# and neither a forged restore POST nor a COPY out of a snapshot changes
# anything for them.
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
system("htpasswd -bB $dir/passwd carol carol-secret >/dev/null 2>&1") == 0 or die 'htpasswd';
spew("$dir/groups", "admin: alice\nwriters: alice bob\n");
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

# The live tree: carol reads, only writers write.
($code) = curl("-u carol:carol-secret $url/dav/f.txt");
is $code, 200, 'carol (not a writer) GETs f.txt';
spew("$dir/g.txt", "carol's\n");
($code) = curl("-u carol:carol-secret -T $dir/g.txt $url/dav/g.txt");
is $code, 403, 'carol may not PUT: 403';
ok(!-e "$dir/volume/live/g.txt", '... nothing was written');
spew("$dir/f2.txt", "changed by bob\n");
($code) = curl("-u bob:bob-secret -T $dir/f2.txt $url/dav/f.txt");
is $code, 204, 'bob (a writer) changes f.txt after the snapshot';

# The versions page and restore.
my $html = "-H 'Accept: text/html'";
(my $c2, my $page) = curl("-u carol:carol-secret $html '$url/dav/f.txt?versions'");
is $c2, 200, 'carol sees the versions page';
like $page, qr{<tr class="version" data-snapshot="nightly">}, '... with the snapshot\'s version';
unlike $page, qr{<form|Restore</button>}, '... and no restore form, no button';
($c2, $page) = curl("-u bob:bob-secret $html '$url/dav/f.txt?versions'");
like $page, qr{<form class="restore" method="post" action="/dav/f.txt">}, 'bob gets a restore form';
my ($token) = $page =~ /name="token" value="([0-9a-f]{64})"/;
ok $token, '... with a token';
my $form = "-H 'Origin: $url' --data 'action=restore&snapshot=nightly&token=$token'";
($code, $body) = curl("-u carol:carol-secret $form $url/dav/f.txt");
is $code, 403, 'carol posting the form with bob\'s token: 403';
is slurp("$dir/volume/live/f.txt"), "changed by bob\n", '... f.txt unchanged';
($code) = curl("-u carol:carol-secret -H 'Origin: $url' --data 'action=restore&snapshot=nightly&token=" . ('0' x 64) . "' $url/dav/f.txt");
is $code, 403, 'carol posting a made-up token: 403';
($code, $body) = curl("-u carol:carol-secret -X COPY -H 'Destination: $url/dav/f.txt' -H 'Overwrite: T' $url/snapshots/nightly/f.txt");
is $code, 403, 'carol copying out of the snapshot over f.txt: 403';
like $body, qr/may not write/, '... the body says why';
is slurp("$dir/volume/live/f.txt"), "changed by bob\n", '... f.txt unchanged';
($code, $body) = curl("-u bob:bob-secret $form $url/dav/f.txt");
is $code, 200, 'bob restores through the form: 200';
like $body, qr{<p class="restored">Restored f\.txt from snapshot nightly</p>}, '... the page says so';
is slurp("$dir/volume/live/f.txt"), "over TLS\n", '... f.txt is the snapshot\'s again';
($code) = curl("-u bob:bob-secret -X COPY -H 'Destination: $url/dav/h.txt' $url/snapshots/nightly/f.txt");
is $code, 201, 'bob (a writer) may COPY out of the snapshot: 201';

# The versions page shows the other location's content only to a user who
# may read it there: the same configuration with /dav readable by writers
# only and /snapshots by admins only (carol an admin, not a writer, here).
# bob sees no snapshot's version of a live file; carol sees a snapshot
# file's versions without the live file; alice (both) sees all.
{
    my $port2 = MirrorDAV::Test::free_port();
    spew("$dir/groups2", "admin: alice carol\nwriters: alice bob\n");
    chmod 0644, "$dir/groups2";
    my %v2 = (%v, PORT => $port2, VOLUME => "$dir/volume2", GROUPS => "$dir/groups2");
    (my $site2 = slurp("$top/conf/production.conf.example")) =~ s/\@(\w+)\@/$v2{$1} \/\/ die "placeholder $1"/ge;
    $site2 =~ s{(<Limit GET OPTIONS PROPFIND>\s*Require) valid-user}{$1 group writers} or die 'no /dav read rule';
    $site2 =~ s{(<LimitExcept MKCOL DELETE>\s*Require) valid-user}{$1 group admin} or die 'no /snapshots read rule';
    # Encoded slashes decoded, as some sites need: a Destination written
    # with %2F must meet the same checks as with '/'.
    $site2 =~ s{(<VirtualHost[^>]*>)}{$1\n    AllowEncodedSlashes On} or die 'no VirtualHost';
    my $s2 = MirrorDAV::Test->start_server(volume => "$dir/volume2", conf_extra => $load . $site2);
    my $url2 = "https://127.0.0.1:$port2";
    spew("$dir/k.txt", "kept\n");
    ($code) = curl("-u alice:alice-secret -T $dir/k.txt $url2/dav/k.txt");
    is $code, 201, 'second server: alice PUTs k.txt';
    ($code) = curl("-u alice:alice-secret -X MKCOL $url2/snapshots/s1");
    is $code, 201, '... and takes a snapshot';
    ($code, $page) = curl("-u bob:bob-secret $html '$url2/dav/k.txt?versions'");
    is $code, 200, 'bob (may not read /snapshots) gets the versions page of k.txt';
    unlike $page, qr{class="version"|<form}, '... without any snapshot\'s version, nor a form';
    like $page, qr{<p class="hidden">You may not read the snapshots\.</p>}, '... it says why';
    ($code, $page) = curl("-u carol:carol-secret $html '$url2/snapshots/s1/k.txt?versions'");
    is $code, 200, 'carol (may not read /dav) gets the versions page of s1/k.txt';
    like $page, qr{<tr class="version" data-snapshot="s1">}, '... with the snapshot\'s version';
    like $page, qr{<section class="current"><h2>Now</h2>\n<p class="hidden">You may not read the live tree\.</p>}, '... and not the live file';
    ($code, $body) = curl("-u carol:carol-secret -X COPY -H 'Destination: $url2/dav%2Fk2.txt' $url2/snapshots/s1/k.txt");
    is $code, 403, 'carol (not a writer) copying out of a snapshot to /dav%2Fk2.txt: 403';
    ok(!-e "$dir/volume2/live/k2.txt", '... nothing was written');
    ($code) = curl("-u alice:alice-secret -X COPY -H 'Destination: $url2/snapshots%2Fs1/new.txt' $url2/dav/k.txt");
    is $code, 403, 'alice copying into a snapshot as /snapshots%2Fs1/new.txt: 403';
    ok(!-e "$dir/volume2/snapshots/s1/new.txt", '... the snapshot is unchanged');
    ($code, $page) = curl("-u alice:alice-secret $html '$url2/dav/k.txt?versions'");
    like $page, qr{<tr class="version" data-snapshot="s1">}, 'alice (may read both) sees the version';
    like $page, qr{<form class="restore"}, '... and may restore it';
}

done_testing;
