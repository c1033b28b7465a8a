#!/usr/bin/env perl
# The browser pages (SPEC section 9, docs/BROWSER.md) in a real headless
# Chromium (Debian's /usr/bin/chromium, driven by playwright-core from
# t/browser/node_modules, which script/bootstrap installs): the snapshot
# list and its verification status, browsing by link text, sorting by
# clicking the headers, a download, the versions page, restore through its
# form, forged restores refused, hostile names shown as text, no
# JavaScript needed, a phone viewport, dark mode; then the production
# configuration (TLS, Basic authentication) with a read-only user.
#
# This file prepares the volumes (PUT with curl, `mirrordav snapshot
# create`, `mirrordav verify` with a manifest) and checks the server side
# (bytes on disk, PROPFIND of the SHA-1); t/browser/pages.js drives the
# browser and prints one RESULT line (JSON) per check, reported here as
# TAP.  Full-page screenshots of every page are kept in the server's run
# directory (its path printed) and copied under build/artifacts/81/.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Path qw(make_path remove_tree);
use File::Temp ();
use Digest::SHA qw(sha1_hex);
use JSON::PP ();
use POSIX ();
use Time::HiRes qw(sleep time);
use MirrorDAV::Test qw(slurp spew);

my $top   = MirrorDAV::Test::top();
my $build = MirrorDAV::Test::build();
my $admin = "$build/mirrordav";
my $node_dir = "$top/t/browser";
plan skip_all => 'no /usr/bin/chromium (script/bootstrap installs it)'
    unless -x '/usr/bin/chromium';
plan skip_all => 'no playwright-core in t/browser/node_modules (script/bootstrap)'
    unless -d "$node_dir/node_modules/playwright-core";

# Test names carry the hostile names, some not ASCII.
binmode(Test::More->builder->$_, ':encoding(UTF-8)') for qw(output failure_output todo_output);
my $tmp = File::Temp::tempdir('browser-t-XXXXXX', TMPDIR => 1, CLEANUP => 1);
chmod 0755, $tmp;
my $json = JSON::PP->new->canonical->utf8;

sub esc {    # one path segment (UTF-8 bytes) for a URL
    my ($s) = @_;
    utf8::encode($s) if utf8::is_utf8($s);
    $s =~ s/([^A-Za-z0-9._~-])/sprintf('%%%02X', ord $1)/ge;
    return $s;
}
sub url_path { join '/', map { esc($_) } split m{/}, $_[0], -1 }

# curl(ARGS...) -> (http code, body); the arguments are passed as a list.
sub curl {
    my (@args) = @_;
    my $out = "$tmp/curl.out";
    open my $fh, '-|', 'curl', '-s', '-g', '-o', $out, '-w', '%{http_code}', @args
        or die "curl: $!";
    my $code = <$fh> // '';
    close $fh;
    return ($code, slurp($out) // '');
}

sub admin {
    my (@args) = @_;
    open my $fh, '-|', $admin, @args or die "$admin: $!";
    local $/;
    my $out = <$fh> // '';
    close $fh;
    return ($out, $? >> 8);
}

# A snapshot whose recorded creation time (whole seconds) is later than
# the previous one's, so that "newest first" is an order and not a tie.
my $last_snapshot = 0;
sub snapshot {
    my ($vol, $name) = @_;
    sleep 0.05 while int(time) <= $last_snapshot;
    my ($out, $rc) = admin('snapshot', 'create', $name, '--volume', $vol);
    is($rc, 0, "mirrordav snapshot create $name") or diag($out);
    $last_snapshot = int(time);
}

# Runs t/browser/pages.js with SPEC (a hash, passed as a JSON file) and
# turns each RESULT line into a test.
sub run_browser {
    my ($spec) = @_;
    my $file = "$tmp/spec-$spec->{mode}.json";
    spew($file, $json->encode($spec));
    my $t0 = time;
    open my $fh, '-|', 'sh', '-c', "exec node '$node_dir/pages.js' '$file' 2>&1"
        or die "node: $!";
    my ($n, @other) = (0);
    while (my $line = <$fh>) {
        if ($line =~ /^RESULT (.*)$/) {
            my $r = $json->decode($1);
            $n++;
            ok($r->{ok}, "[$spec->{mode}] $r->{name}")
                or diag($r->{diag} // '');
        } else {
            push @other, $line;
        }
    }
    close $fh;
    is($?, 0, "[$spec->{mode}] the browser script ran to its end ($n checks, "
              . sprintf('%.1f s', time - $t0) . ')')
        or diag(join '', @other[($#other > 40 ? $#other - 40 : 0) .. $#other]);
}

# Screenshots: in the server's run directory (kept when a test fails) and
# a copy under build/artifacts/81/ for a human to look at.
remove_tree("$build/artifacts/81");    # this run's screenshots only
sub keep_artifacts {
    my ($from) = @_;
    my $to = "$build/artifacts/81";
    make_path($to);
    system('cp', '-r', glob("$from/*"), "$to/") if glob("$from/*");
    diag("screenshots: $to (and $from, kept if a test failed)");
}

# ================================================================ volume
my $srv  = MirrorDAV::Test->start_server;
my $vol  = $srv->volume;
my $base = $srv->url;
my $art  = "$srv->{base}/artifacts";
make_path($art);

sub put {
    my ($path, $bytes) = @_;
    my $f = "$tmp/put.bin";
    spew($f, $bytes);
    my ($code, $body) = curl('-T', $f, $base . '/dav/' . url_path($path));
    ok($code == 201 || $code == 204, "PUT /dav/$path: $code") or diag($body);
}
sub mkcol {
    my ($path) = @_;
    my ($code, $body) = curl('-X', 'MKCOL', $base . '/dav/' . url_path($path) . '/');
    is($code, 201, "MKCOL /dav/$path/") or diag($body);
}

# Two levels down from a snapshot's root, a folder to sort: names, sizes
# and mtimes in three different orders, and two folders that must stay on
# top in every order.
mkcol($_) for qw(docs docs/reports docs/reports/archive docs/reports/drafts);
my @sortfiles = (    # name, size, mtime
    ['b-report.txt', 3000,   1_500_000_000],
    ['a-summary.txt', 70,    1_700_000_000],
    ['d-figures.csv', 120_000, 1_600_000_000],
    ['c-notes.txt', 9,       1_400_000_000],
);
for my $f (@sortfiles) {
    put("docs/reports/$f->[0]", substr("$f->[0] " . ('x' x $f->[1]), 0, $f->[1]));
    utime $f->[2], $f->[2], "$vol/live/docs/reports/$f->[0]" or die "utime: $!";
}
put('docs/reports/archive/old.txt', "old\n");
my %dir_mtime = (archive => 1_650_000_000, drafts => 1_450_000_000);
utime $dir_mtime{$_}, $dir_mtime{$_}, "$vol/live/docs/reports/$_" or die "utime: $!"
    for keys %dir_mtime;
# A binary file to download (every byte value, and more).
my $blob = join '', map { chr(($_ * 7 + int($_ / 256)) % 256) } 0 .. 300_000;
put('docs/reports/data.bin', $blob);

# Hostile names: in the live tree and (through the snapshots) in snapshots.
my @hostile_files = ('<img src=x onerror=alert(1)>.txt', q{"'&.txt},
                     'javascript:alert(1).txt', "na\x{ef}ve \x{65e5}\x{672c} \x{fc}.txt",
                     '%41.txt', 'A.txt',
                     'a-very-long-file-name-that-does-not-fit-on-a-phone-screen-'
                     . 'at-all-unless-the-table-scrolls-or-wraps-0123456789.txt');
my @hostile_dirs  = ('javascript:alert(1)', '<img src=x onerror=alert(1)>', q{"'&});
mkcol('hostile');
my %hostile_content;
for my $n (@hostile_files) {
    (my $c = "content of [$n]\n") =~ s/[^\x20-\x7e\n]/?/g;
    $hostile_content{$n} = $c;
    put("hostile/$n", $c);
}
for my $d (@hostile_dirs) {
    mkcol("hostile/$d");
    put("hostile/$d/inside.txt", "inside\n");
}

# A verified subtree: the client's files and its manifest beside them.
mkcol('backup');
put("backup/f$_.txt", "backup file $_\n") for 1 .. 5;
{
    my $m = "$tmp/backup.manifest";
    my ($out, $rc) = admin('manifest', 'generate', "$vol/live/backup", '-o', $m);
    is($rc, 0, 'the client generates its manifest') or diag($out);
    put('backup/backup.manifest', slurp($m));
}

# The file with a history: v1 in beta, v2 in alpha, v1 again in gamma
# (a revert), absent from delta, v3 live now.  Creation order beta,
# alpha, gamma, delta is neither name order nor its reverse.
mkcol('notes');
my %v = (v1 => "plan, first version\n" x 3, v2 => "plan, second version, longer\n" x 5,
         v3 => "plan, third version (live)\n");
put('notes/plan.txt', $v{v1});
snapshot($vol, 'beta');
put('notes/plan.txt', $v{v2});
# alpha: the client's tree lost one file and gained one since its
# manifest: 2 discrepancies (missing, extra).
my ($code) = curl('-X', 'DELETE', "$base/dav/backup/f3.txt");
is($code, 204, 'DELETE backup/f3.txt');
put('backup/unlisted.txt', "not in the manifest\n");
snapshot($vol, 'alpha');
put('notes/plan.txt', $v{v1});
snapshot($vol, 'gamma');
($code) = curl('-X', 'DELETE', "$base/dav/notes/plan.txt");
is($code, 204, 'DELETE notes/plan.txt');
snapshot($vol, 'delta');
put('notes/plan.txt', $v{v3});

my ($out, $rc) = admin('verify', '--volume', $vol, '--snapshot', 'beta',
                       '--manifest', 'backup/backup.manifest');
is($rc, 0, 'verify beta: clean (exit 0)') or diag($out);
($out, $rc) = admin('verify', '--volume', $vol, '--snapshot', 'alpha',
                    '--manifest', 'backup/backup.manifest');
is($rc, 1, 'verify alpha: discrepancies (exit 1)') or diag($out);
my @disc = map { [split /\t/] } grep { !/^#/ && /\t/ } split /\n/, $out;
is_deeply([sort map { "$_->[0] $_->[1]" } @disc],
          ['backup/f3.txt missing', 'backup/unlisted.txt extra'],
          'verify alpha: exactly the missing and the extra file') or diag($out);

my %snap_info;
{
    my ($o, $r) = admin('snapshot', 'list', '--volume', $vol, '--json');
    is($r, 0, 'snapshot list --json') or diag($o);
    my $list = eval { $json->decode($o) } // [];
    $list = $list->{snapshots} if ref $list eq 'HASH';
    $snap_info{$_->{name}} = $_ for @$list;
}

my $live_sha1 = sub { sha1_hex(slurp("$vol/live/$_[0]") // '') };
run_browser({
    mode => 'main', base => $base, artifacts => $art,
    snapshots => [
        { name => 'delta', status => 'not-verified', text => 'not verified' },
        { name => 'gamma', status => 'not-verified', text => 'not verified' },
        { name => 'alpha', status => 'discrepancies', text => '2 discrepancies',
          report => [map { { path => $_->[0], kind => $_->[1] } } @disc] },
        { name => 'beta', status => 'clean', text => 'verified clean' },
    ],
    snapshot_info => \%snap_info,
    browse => { snapshot => 'gamma', levels => ['docs', 'reports'] },
    sortdir => { dirs => [map { { name => $_, mtime => $dir_mtime{$_} } } sort keys %dir_mtime],
                 files => [map { { name => $_->[0], bytes => $_->[1], mtime => $_->[2] } }
                           @sortfiles, ['data.bin', length $blob, undef]] },
    download => { name => 'data.bin', sha1 => sha1_hex($blob), bytes => length $blob },
    versions => {
        path => 'notes/plan.txt',
        live => { bytes => length $v{v3}, sha1 => sha1_hex($v{v3}) },
        # groups by their newest member; members newest first
        groups => [
            { sha1 => sha1_hex($v{v1}), bytes => length $v{v1}, members => ['gamma', 'beta'] },
            { sha1 => sha1_hex($v{v2}), bytes => length $v{v2}, members => ['alpha'] },
        ],
        restore => { snapshot => 'beta', sha1 => sha1_hex($v{v1}), bytes => length $v{v1},
                     live_sha1 => sha1_hex($v{v3}) },
    },
    absent => { path => 'backup/f3.txt', snapshot => 'beta', sha1 => sha1_hex("backup file 3\n") },
    hostile => { dir => 'hostile', snapshot => 'delta', files => \%hostile_content,
                 dirs => \@hostile_dirs },
});

# What the browser's restore left on the server: v1 live, its SHA-1 known.
is(slurp("$vol/live/notes/plan.txt"), $v{v1}, 'after the restore: the live file holds v1 (on disk)');
($code, my $got) = curl("$base/dav/notes/plan.txt");
is($got, $v{v1}, 'after the restore: GET of the live file gives v1');
{
    my $r = $srv->propfind('/dav/notes/plan.txt', 0,
        '<?xml version="1.0"?><D:propfind xmlns:D="DAV:" xmlns:M="http://mirrordav.org/ns">'
      . '<D:prop><M:sha1/></D:prop></D:propfind>');
    my ($sha1) = $r->{content} =~ m{<(?:\w+:)?sha1[^>]*>([0-9a-f]{40})<};
    is($sha1, sha1_hex($v{v1}), 'after the restore: PROPFIND sha1 = SHA-1 of v1')
        or diag($r->{content});
}
is(slurp("$vol/snapshots/beta/notes/plan.txt"), $v{v1}, 'the snapshot is unchanged');
is(slurp("$vol/live/backup/f3.txt"), "backup file 3\n", 'the deleted file is back in the live tree');
{
    my $r = $srv->propfind('/dav/backup/f3.txt', 0,
        '<?xml version="1.0"?><D:propfind xmlns:D="DAV:" xmlns:M="http://mirrordav.org/ns">'
      . '<D:prop><M:sha1/></D:prop></D:propfind>');
    my ($sha1) = $r->{content} =~ m{<(?:\w+:)?sha1[^>]*>([0-9a-f]{40})<};
    is($sha1, sha1_hex("backup file 3\n"), '... with its SHA-1 recorded') or diag($r->{content});
}
keep_artifacts($art);

# ================================================================ production
# conf/production.conf.example as t/18 runs it: TLS, Basic authentication;
# alice writes (writers group), bob only reads.
{
    my $dir = "$tmp/prod";
    make_path($dir);
    chmod 0755, $dir;
    system("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 "
         . "-keyout $dir/key.pem -out $dir/cert.pem >/dev/null 2>&1") == 0 or die 'openssl';
    system("htpasswd -cbB $dir/passwd alice alice-secret >/dev/null 2>&1") == 0 or die 'htpasswd';
    system("htpasswd -bB $dir/passwd bob bob-secret >/dev/null 2>&1") == 0 or die 'htpasswd';
    spew("$dir/groups", "admin: alice\nwriters: alice\n");
    chmod 0644, "$dir/key.pem", "$dir/passwd", "$dir/groups";
    my $port = MirrorDAV::Test::free_port();
    chomp(my $md = `apxs -q LIBEXECDIR` || '/usr/lib/apache2/modules');
    my %p = (PORT => $port, ADDR => '127.0.0.1', SERVER_NAME => '127.0.0.1',
             CERT => "$dir/cert.pem", KEY => "$dir/key.pem", VOLUME => "$dir/volume",
             PASSWD => "$dir/passwd", GROUPS => "$dir/groups");
    (my $site = slurp("$top/conf/production.conf.example"))
        =~ s/\@(\w+)\@/$p{$1} \/\/ die "placeholder $1"/ge;
    my $load = join '', map { "LoadModule ${_}_module $md/mod_$_.so\n" }
        qw(ssl socache_shmcb auth_basic authn_core authn_file authz_user authz_groupfile);
    my $ps = MirrorDAV::Test->start_server(volume => "$dir/volume", conf_extra => $load . $site);
    my $url = "https://127.0.0.1:$port";
    my $f = "$dir/plan.txt";
    spew($f, $v{v1});
    my ($c) = curl('-k', '-u', 'alice:alice-secret', '-T', $f, "$url/dav/plan.txt");
    is($c, 201, 'production: alice PUTs plan.txt');
    $last_snapshot = 0;
    snapshot("$dir/volume", 'nightly');
    spew($f, $v{v2});
    ($c) = curl('-k', '-u', 'alice:alice-secret', '-T', $f, "$url/dav/plan.txt");
    is($c, 204, 'production: alice changes it');
    ($c) = curl('-k', '-u', 'bob:bob-secret', '-T', $f, "$url/dav/bob.txt");
    is($c, 403, 'production: bob (not a writer) may not PUT')
        or diag('conf/production.conf.example lacks the writers group?');
    my $part = "$art/production";
    make_path($part);
    run_browser({
        mode => 'production', base => $url, artifacts => $part,
        reader => ['bob', 'bob-secret'], writer => ['alice', 'alice-secret'],
        path => 'plan.txt', snapshot => 'nightly', live_sha1 => sha1_hex($v{v2}),
    });
    # The reader's forged restores changed nothing (checked after each
    # one); the writer's restore at the end brought back the snapshot's.
    is(slurp("$dir/volume/live/plan.txt"), $v{v1},
       "production: the live file is the snapshot's after the writer's restore");
    keep_artifacts($art);
}

done_testing;
