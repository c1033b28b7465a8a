#!/usr/bin/env perl
# Bad input (SPEC sections 2 and 10): missing parents, MKCOL misuse, dot
# segments, encoded slashes and NULs, the reserved name .mirrordav and
# symbolic links never lead outside the volume nor touch anything, and
# every refusal has a precise status and a short body naming the cause.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Find ();
use File::Path qw(make_path);
use Digest::SHA ();
use MirrorDAV::Test qw(slurp spew);

# Depth: infinity PROPFIND is enabled so that it can be checked too.
my $srv = MirrorDAV::Test->start_server(
    conf_extra => "<Location /dav>\n    DavDepthInfinity On\n</Location>");
my $live  = $srv->live;
my $vol   = $srv->volume;
(my $base = $vol) =~ s{/[^/]+$}{};        # the volume's parent directory
my $dav   = $srv->url('/dav');
my $www   = getpwnam('www-data');
my $wwwg  = getgrnam('www-data');

sub own { system('chown', '-h', 'www-data:www-data', @_) == 0 or die "chown @_" if $< == 0 }

# A fingerprint of everything under DIRS: path -> type, size, mtime, content
# hash or link target.  Used to show that nothing was touched.
sub fingerprint {
    my %f;
    for my $dir (@_) {
        File::Find::find({ no_chdir => 1, wanted => sub {
            my @st = lstat $_ or return;
            my $v = -l _ ? 'l:' . readlink($_)
                  : -d _ ? 'd'
                  : join ':', 'f', $st[7], $st[9], Digest::SHA->new(1)->addfile($_, 'b')->hexdigest;
            $f{$_} = $v;
        } }, $dir);
    }
    return \%f;
}
sub diff_fp {
    my ($a, $b) = @_;
    my @d;
    for (sort keys %{{ %$a, %$b }}) {
        my ($x, $y) = ($a->{$_} // 'absent', $b->{$_} // 'absent');
        push @d, "$_: $x -> $y" if $x ne $y;
    }
    return @d;
}

# Asserts a refusal: a 4xx STATUS (exact if given, else any 4xx).  The body
# must be short, non-empty and match CAUSE; body problems are collected in
# @body_problems and asserted once per section (body_check), so that one
# missing message does not show as dozens of failures.
my @body_problems;
sub refused {
    my ($name, $r, $status, $cause, $nobody) = @_;
    defined $status ? is($r->{status}, $status, "$name -> $status")
                    : like($r->{status}, qr/^4\d\d$/, "$name -> 4xx ($r->{status})");
    return $r if $nobody;
    my $len = length $r->{content};
    (my $short = substr($r->{content}, 0, 300)) =~ s/\s+/ /g;
    push @body_problems, "$name: $r->{status}, body of $len bytes: $short"
        unless $len > 0 && $len <= 4096 && $r->{content} =~ $cause;
    return $r;
}
sub body_check {
    my ($section) = @_;
    is(scalar(@body_problems), 0, "$section: every refusal has a short body naming the cause")
        or diag(join "\n", @body_problems[0 .. ($#body_problems > 7 ? 7 : $#body_problems)],
                @body_problems > 8 ? ('... and ' . (@body_problems - 8) . ' more like these') : ());
    @body_problems = ();
}

# ------------------------------------------------------------ setup
ok($srv->mkcol('/dav/sub')->{status} == 201, 'MKCOL /dav/sub');
ok($srv->put('/dav/sub/file.txt', "hello\n")->{status} == 201, 'PUT /dav/sub/file.txt');
ok($srv->put('/dav/top.txt', "top\n")->{status} == 201, 'PUT /dav/top.txt');
my $r = $srv->request('PROPPATCH', '/dav/sub/file.txt', { 'Content-Type' => 'application/xml' },
    '<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:x-test:">'
  . '<D:set><D:prop><Z:color>blue</Z:color></D:prop></D:set></D:propertyupdate>');
is($r->{status}, 207, 'PROPPATCH a dead property (so that a sidecar exists)');
ok(-d "$live/.mirrordav" && -d "$live/sub/.mirrordav", 'the sidecar folders exist');
# The reserved name is refused in any letter case (see paths.c): a folder
# that a case-sensitive volume keeps apart is refused and hidden all the
# same.
mkdir "$live/sub/.MIRRORDAV" or die;
spew("$live/sub/.MIRRORDAV/planted.txt", "PLANTED\n");
own("$live/sub/.MIRRORDAV", "$live/sub/.MIRRORDAV/planted.txt");

# Secrets outside the volume that www-data could read and write, so that an
# escape would show.
my $outside = "$base/outside";
make_path($outside);
spew("$outside/secret.txt", "OUTSIDE-SECRET-$$\n");
spew("$base/secret.txt", "PARENT-SECRET-$$\n");
spew("$vol/state/marker.txt", "STATE-SECRET-$$\n");
own($outside, "$outside/secret.txt", "$base/secret.txt", "$vol/state/marker.txt");

# What must not change: the volume, the outside directory, the parent's secret.
my @watched = ($vol, $outside, "$base/secret.txt");
my $before = fingerprint(@watched);

# ------------------------------------------------------------ PUT, MKCOL
$r = refused('PUT to a missing parent', $srv->put('/dav/nodir/file.txt', "x"),
             409, qr/parent|collection|exist/i);
ok(!-e "$live/nodir", '... nothing created');
$r = refused('PUT to a missing grandparent', $srv->put('/dav/no/dir/file.txt', "x"),
             409, qr/parent|collection|exist/i);
ok(!-e "$live/no", '... nothing created');
$r = refused('PUT below a file', $srv->put('/dav/top.txt/child', "x"),
             409, qr/parent|collection|exist|file/i);
is(slurp("$live/top.txt"), "top\n", '... the file is intact');

$r = refused('MKCOL with a body',
             $srv->request('MKCOL', '/dav/newcol', { 'Content-Type' => 'text/plain' }, 'body'),
             415, qr/unsupported|media|body/i);
ok(!-e "$live/newcol", '... nothing created');
$r = refused('MKCOL with an XML body',
             $srv->request('MKCOL', '/dav/newcol', { 'Content-Type' => 'application/xml' },
                           '<?xml version="1.0"?><x/>'),
             415, qr/unsupported|media|body/i);
ok(!-e "$live/newcol", '... nothing created');
refused('MKCOL on an existing collection', $srv->mkcol('/dav/sub'), 405, qr/not allowed|exists/i);
refused('MKCOL on an existing file', $srv->mkcol('/dav/top.txt'), 405, qr/not allowed|exists/i);
is(slurp("$live/top.txt"), "top\n", '... the file is intact');
refused('MKCOL with a missing parent', $srv->mkcol('/dav/no/col'), 409, qr/parent|collection|exist/i);
ok(!-e "$live/no", '... nothing created');

is_deeply([diff_fp($before, fingerprint(@watched))], [], 'nothing changed on disk so far');
body_check('PUT and MKCOL');

# ------------------------------------------------------------ dot segments etc.
my $path_cause = qr/bad request|forbidden|not found|permission|outside|segment|path|destination|invalid/i;
my @secrets = (qr/root:.*:0:0:/, qr/OUTSIDE-SECRET/, qr/PARENT-SECRET/, qr/STATE-SECRET/);
sub no_leak {
    my ($name, $r) = @_;
    my @hit = grep { $r->{content} =~ $_ } @secrets;
    ok(!@hit, "$name: leaks nothing");
}

for my $t (
    '/dav/../../etc/passwd',
    '/dav/../../../../../../etc/passwd',
    '/dav/%2e%2e/%2e%2e/etc/passwd',
    '/dav/%2E%2E/%2E%2E/etc/passwd',
    '/dav/%2E%2E/secret.txt',
    '/dav/..%2Fsecret.txt',
    '/dav/..%2f..%2fsecret.txt',
    '/dav/%2e%2e%2f%2e%2e%2fsecret.txt',
    '/dav/sub/%2e%2e/%2e%2e/secret.txt',
    '/dav/sub/..%2F..%2F..%2Fsecret.txt',
    '/dav/..%5c..%5csecret.txt',
    '/dav/../volume/state/marker.txt',
    '/dav/%2e%2e/state/marker.txt',
    '/dav/..%2Fstate%2Fmarker.txt',
    '/dav/sub%2Ffile.txt',
    '/dav/sub/file.txt%00',
    '/dav/sub/file.txt%00.jpg',
    '/dav/%00',
    '/dav/..%00/secret.txt',
) {
    my $r = $srv->raw_request('GET', $t);
    refused("GET $t", $r, undef, $path_cause);
    no_leak("GET $t", $r);
    $r = $srv->raw_request('PROPFIND', $t, { Depth => 1 });
    like($r->{status}, qr/^4\d\d$/, "PROPFIND $t -> 4xx ($r->{status})");
    no_leak("PROPFIND $t", $r);
}

# Writes through such paths, and COPY/MOVE to such destinations.
for my $t (
    '/dav/../escape.txt',
    '/dav/%2e%2e/escape.txt',
    '/dav/%2E%2E/escape.txt',
    '/dav/%2E%2E%2Fescape.txt',
    '/dav/..%2Fescape.txt',
    '/dav/sub/%2e%2e/%2e%2e/escape.txt',
    '/dav/sub/..%2f..%2fescape.txt',
    '/dav/%2e%2e/outside/escape.txt',
    '/dav/%2e%2e/state/escape.txt',
    '/dav/escape.txt%00',
    '/dav/escape%00.txt',
    '/dav/sub%2Fescape.txt',
) {
    refused("PUT $t", $srv->raw_request('PUT', $t, {}, "ESCAPED\n"), undef, $path_cause);
    refused("MKCOL $t", $srv->raw_request('MKCOL', $t), undef, $path_cause);
    for my $m ('COPY', 'MOVE') {
        my $r = $srv->raw_request($m, '/dav/top.txt',
                                  { Destination => "$dav$t" =~ s{/dav/dav}{/dav}r, Overwrite => 'T' });
        refused("$m /dav/top.txt to $t", $r, undef, $path_cause);
    }
    refused("COPY $t as a source", $srv->raw_request('COPY', $t, { Destination => "$dav/escaped-copy.txt" }),
            undef, $path_cause);
}
ok(-f "$live/top.txt", 'the source of the refused COPY/MOVEs is still there');
my @escaped;
File::Find::find(sub { push @escaped, $File::Find::name if /escape/ }, $base);
is_deeply(\@escaped, [], 'no escape* file was created anywhere under the volume\'s parent');
is_deeply([diff_fp($before, fingerprint(@watched))], [], 'nothing changed in the volume nor outside it');
body_check('dot segments, encoded slashes, NULs');

# ------------------------------------------------------------ .mirrordav
my $reserved = qr/reserved|\.mirrordav/i;
my $lock_body = '<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/>'
              . '</D:lockscope><D:locktype><D:write/></D:locktype></D:lockinfo>';
my $pp_body = '<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:x-test:">'
            . '<D:set><D:prop><Z:x>1</Z:x></D:prop></D:set></D:propertyupdate>';
my @sidecar_dbs = map { s{^\Q$live\E}{}r } glob("$live/.mirrordav/* $live/sub/.mirrordav/*");
ok(scalar(@sidecar_dbs), 'there are sidecar files to aim at: ' . join(' ', @sidecar_dbs));
my @reserved_uris = ('/dav/.mirrordav', '/dav/.mirrordav/', '/dav/sub/.mirrordav', '/dav/sub/.mirrordav/',
           '/dav/.mirrordav/new', '/dav/.mirrordav/new/deeper', '/dav/%2emirrordav/',
           '/dav/sub/%2Emirrordav', '/dav/./.mirrordav', '/dav/sub/../.mirrordav/',
           '/dav/.MirrorDAV', '/dav/.MIRRORDAV/', '/dav/.MirrorDAV/new', '/dav/sub/.MirrorDav/',
           '/dav/sub/.MIRRORDAV', '/dav/sub/.MIRRORDAV/planted.txt', '/dav/%2EMIRRORDAV',
           (map { "/dav$_" } @sidecar_dbs));
for my $t (@reserved_uris) {
    for my $req (
        ['GET'], ['HEAD'], ['OPTIONS'], ['PUT', {}, "OVERWRITTEN\n"],
        ['PROPFIND', { Depth => 0 }], ['PROPFIND', { Depth => 1 }],
        ['PROPPATCH', { 'Content-Type' => 'application/xml' }, $pp_body],
        ['DELETE'], ['MKCOL'],
        ['LOCK', { 'Content-Type' => 'application/xml', Timeout => 'Second-60' }, $lock_body],
        ['UNLOCK', { 'Lock-Token' => '<opaquelocktoken:00000000-0000-0000-0000-000000000000>' }],
        ['COPY', { Destination => "$dav/copied-out" }],
        ['MOVE', { Destination => "$dav/moved-out" }],
    ) {
        my ($m, $h, $c) = @$req;
        my $r = $srv->raw_request($m, $t, $h, $c);
        refused("$m $t", $r, 404, $reserved, $m eq 'HEAD' ? 'nobody' : ());
        no_leak("$m $t", $r);
    }
}
body_check('.mirrordav in the request URI');
for my $t (@reserved_uris) {
    (my $dest = "$dav$t") =~ s{/dav/dav}{/dav};
    for my $m ('COPY', 'MOVE') {
        for my $src ('/dav/top.txt', '/dav/sub') {
            for my $ow ('T', 'F') {
                my $r = $srv->raw_request($m, $src, { Destination => $dest, Overwrite => $ow, Depth => 'infinity' });
                refused("$m $src to $t (Overwrite $ow)", $r, 404, $reserved);
            }
        }
    }
}
body_check('.mirrordav in the Destination');
ok(!-e "$live/copied-out" && !-e "$live/moved-out", 'no COPY/MOVE out of .mirrordav happened');
ok(-f "$live/top.txt" && -d "$live/sub", 'no COPY/MOVE source was moved');
is_deeply([diff_fp($before, fingerprint(@watched))], [], 'nothing changed on disk (sidecars included)');

# Listings never show it.
for my $depth (0, 1, 'infinity') {
    for my $p ('/dav/', '/dav/sub/') {
        my $r = $srv->propfind($p, $depth);
        is($r->{status}, 207, "PROPFIND Depth $depth $p");
        unlike($r->{content}, qr/\.mirrordav/i, "... does not list .mirrordav in any case");
    }
}
$r = $srv->propfind('/dav/', 'infinity');
like($r->{content}, qr{/dav/sub/file\.txt<}, 'PROPFIND Depth infinity does list the tree');
$r = $srv->get('/dav/', { Accept => 'text/html' });
unlike($r->{content}, qr/\.mirrordav/i, 'the HTML listing does not show .mirrordav');
$r = $srv->get('/dav/sub/', { Accept => 'text/html' });
unlike($r->{content}, qr/\.mirrordav/i, 'the HTML listing of a subfolder does not show .mirrordav nor .MIRRORDAV');

# ------------------------------------------------------------ symbolic links
my %links = (
    evil    => '/etc',
    pw      => '/etc/passwd',
    out     => $outside,
    outfile => "$outside/secret.txt",
    st      => "$vol/state",
    strel   => '../state',
    up      => '..',
);
for (sort keys %links) {
    symlink $links{$_}, "$live/$_" or die "symlink $_: $!";
    own("$live/$_");
}
symlink '../../../outside', "$live/sub/rel" or die;
symlink '../../nowhere/at/all', "$live/dangling" or die;
own("$live/sub/rel", "$live/dangling");
ok(-f "$live/sub/rel/secret.txt", 'the relative link does lead outside');
$before = fingerprint(@watched, '/etc/passwd');
my $etc_before = join "\n", sort glob('/etc/*');

my $link_cause = qr/symbolic link|symlink|link/i;
for my $t ('/dav/pw', '/dav/evil/passwd', '/dav/evil/', '/dav/outfile', '/dav/out/secret.txt',
           '/dav/st/marker.txt', '/dav/strel/marker.txt', '/dav/up/state/marker.txt',
           '/dav/up/live/top.txt', '/dav/sub/rel/secret.txt', '/dav/sub/rel/', '/dav/dangling',
           '/dav/dangling/x') {
    my $r = $srv->raw_request('GET', $t);
    refused("GET $t", $r, undef, $link_cause);
    no_leak("GET $t", $r);
    $r = $srv->raw_request('GET', $t, { Range => 'bytes=0-100' });
    like($r->{status}, qr/^4\d\d$/, "GET $t with Range -> 4xx");
    no_leak("GET $t with Range", $r);
    $r = $srv->raw_request('PROPFIND', $t, { Depth => 1 });
    refused("PROPFIND $t", $r, undef, $link_cause);
    no_leak("PROPFIND $t", $r);
    unlike($r->{content}, qr/secret|marker|passwd|shadow/, "PROPFIND $t lists nothing behind the link");
}

for my $t ('/dav/evil/x', '/dav/out/x', '/dav/out/secret.txt', '/dav/outfile', '/dav/st/x',
           '/dav/st/marker.txt', '/dav/strel/x', '/dav/up/x', '/dav/sub/rel/x', '/dav/pw') {
    my $r = $srv->raw_request('PUT', $t, {}, "WRITTEN-THROUGH-LINK\n");
    refused("PUT $t", $r, undef, $link_cause);
    $r = $srv->raw_request('PROPPATCH', $t, { 'Content-Type' => 'application/xml' }, $pp_body);
    refused("PROPPATCH $t", $r, undef, $link_cause);
}
for my $t ('/dav/evil/newcol', '/dav/out/newcol', '/dav/st/newcol', '/dav/sub/rel/newcol') {
    refused("MKCOL $t", $srv->raw_request('MKCOL', $t), undef, $link_cause);
}
for my $t ('/dav/pw', '/dav/evil', '/dav/out', '/dav/outfile', '/dav/st', '/dav/up', '/dav/sub/rel',
           '/dav/out/secret.txt', '/dav/st/marker.txt') {
    for my $m ('COPY', 'MOVE') {
        my $r = $srv->raw_request($m, $t, { Destination => "$dav/copy", Depth => 'infinity' });
        refused("$m $t to /dav/copy", $r, undef, $link_cause);
        ok(!-e "$live/copy" && !-l "$live/copy", "... /dav/copy not created");
    }
}
for my $t ('/dav/out/copied.txt', '/dav/st/copied.txt', '/dav/sub/rel/copied.txt',
           '/dav/outfile', '/dav/pw') {
    for my $m ('COPY', 'MOVE') {
        my $r = $srv->raw_request($m, '/dav/top.txt', { Destination => "$dav$t" =~ s{/dav/dav}{/dav}r,
                                                         Overwrite => 'T' });
        refused("$m /dav/top.txt to $t", $r, undef, $link_cause);
    }
}
ok(-f "$live/top.txt", 'the source of the refused COPY/MOVEs is still there');

for my $t ('/dav/out/secret.txt', '/dav/st/marker.txt', '/dav/sub/rel/secret.txt') {
    refused("DELETE $t", $srv->raw_request('DELETE', $t), undef, $link_cause);
}
for my $t ('/dav/evil', '/dav/pw', '/dav/out', '/dav/outfile', '/dav/st', '/dav/up') {
    my $r = $srv->raw_request('DELETE', $t);
    if ($r->{status} =~ /^2/) {
        # Removing the link itself does not follow it; allowed, but then
        # the target must be untouched (checked below).
        note("DELETE $t removed the link itself ($r->{status})");
    } else {
        refused("DELETE $t", $r, undef, $link_cause);
    }
}
ok(-f "$outside/secret.txt" && slurp("$outside/secret.txt") eq "OUTSIDE-SECRET-$$\n",
   'the outside target is intact');
ok(-f "$vol/state/marker.txt", 'the state/ target is intact');
ok(-f "$live/top.txt" && -f "$live/sub/file.txt", 'the live tree is intact');
is(join("\n", sort glob('/etc/*')), $etc_before, 'nothing created or removed in /etc');
my %after = %{ fingerprint(@watched, '/etc/passwd') };
# A link may have been removed by a DELETE of the link itself; nothing else
# may change.
my %b = %$before;
delete $b{"$live/$_"} for grep { !exists $after{"$live/$_"} } keys %links;
is_deeply([diff_fp(\%b, \%after)], [], 'nothing else changed in the volume, outside it, nor /etc/passwd');
body_check('symbolic links');

# Listings do not show the links.
for my $depth (1, 'infinity') {
    my $r = $srv->propfind('/dav/', $depth);
    is($r->{status}, 207, "PROPFIND Depth $depth of /dav/ with links planted");
    my @shown = grep { $r->{content} =~ m{<D:href>/dav/(?:sub/)?\Q$_\E/?</D:href>} } (keys %links, 'rel', 'dangling');
    is_deeply(\@shown, [], '... lists none of the links');
    no_leak("PROPFIND Depth $depth", $r);
    unlike($r->{content}, qr/passwd|secret\.txt|marker\.txt/, '... nor anything behind them');
    like($r->{content}, $depth eq '1' ? qr{/dav/top\.txt<} : qr{/dav/sub/file\.txt<},
         '... but lists the real tree');
}

done_testing;
