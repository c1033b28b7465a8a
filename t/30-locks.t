#!/usr/bin/env perl
# Class 2 locking (SPEC section 2): litmus `locks' with no warnings, then
# the lock semantics one request at a time, lock expiry, concurrent
# lockers in several processes, and a corrupt lock database.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Temp ();
use POSIX ();
use MirrorDAV::Test qw(slurp spew);

my $srv  = MirrorDAV::Test->start_server;
my $live = $srv->live;

# ------------------------------------------------------------ litmus locks
{
    my $r = $srv->mkcol('/dav/litmus');
    is($r->{status}, 201, 'MKCOL /dav/litmus') or diag($r->{content});
    my $wd  = File::Temp::tempdir('litmus-XXXXXX', TMPDIR => 1, CLEANUP => 1);
    my $url = $srv->url('/dav/litmus/');
    local $ENV{TESTS} = 'locks';
    my $out = `cd '$wd' && timeout 240 litmus -k '$url' 2>&1`;
    isnt($? >> 8, 124, 'litmus finished within its time limit');
    my ($run, $passed, $failed) =
        $out =~ /<- summary for `locks': of (\d+) tests run: (\d+) passed, (\d+) failed/;
    ok(defined $run && $run > 0, 'locks: summary line present');
    is($failed, 0, 'locks: 0 failed');
    is($passed, $run, "locks: all ${\($run // '?')} tests passed");
    my @warn = grep { /WARNING/ || /with \d+ warnings?\)/ } split /\n/, $out;
    my ($issued) = $out =~ /^-> (\d+) warnings? (?:was|were) issued\./m;
    is($issued // 0, 0, 'locks: no warnings issued');
    is(scalar(@warn), 0, 'locks: no WARNING lines') or diag(join "\n", @warn);
    diag("litmus output:\n$out") unless Test::More->builder->is_passing;
}

# ------------------------------------------------------------ helpers

sub lockinfo {
    my (%o) = @_;
    my $scope = $o{scope} // 'exclusive';
    my $owner = $o{owner} // '<D:owner><D:href>mailto:t@example.org</D:href></D:owner>';
    return qq{<?xml version="1.0" encoding="utf-8"?>}
         . qq{<D:lockinfo xmlns:D="DAV:"><D:lockscope><D:$scope/></D:lockscope>}
         . qq{<D:locktype><D:write/></D:locktype>$owner</D:lockinfo>};
}

# lock(PATH, scope => ..., depth => ..., timeout => ..., owner => ...)
sub lock_req {
    my ($path, %o) = @_;
    my %h = ('Content-Type' => 'application/xml');
    $h{Depth}   = $o{depth}   if defined $o{depth};
    $h{Timeout} = $o{timeout} if defined $o{timeout};
    return $srv->request('LOCK', $path, \%h, lockinfo(%o));
}

sub token_of {
    my ($r) = @_;
    my $t = $r->{headers}{'lock-token'} // '';
    $t =~ s/^\s*<|>\s*$//g;
    return $t;
}

sub unlock_req {
    my ($path, $token) = @_;
    return $srv->request('UNLOCK', $path, { 'Lock-Token' => "<$token>" });
}

sub put_if {
    my ($path, $token, $data) = @_;
    return $srv->put($path, $data // 'data', $token ? { If => "(<$token>)" } : {});
}

sub timeout_of {
    my ($xml) = @_;
    my ($s) = ($xml // '') =~ /<D:timeout>Second-(\d+)<\/D:timeout>/;
    return $s;
}

sub lockdiscovery {
    my ($path) = @_;
    my $r = $srv->propfind($path, 0, '<?xml version="1.0"?><D:propfind xmlns:D="DAV:">'
                                   . '<D:prop><D:lockdiscovery/></D:prop></D:propfind>');
    return $r->{content} // '';
}

# ------------------------------------------------------------ unmapped URL
my $tok;
{
    my $r = lock_req('/dav/new.txt');
    is($r->{status}, 201, 'LOCK of an unmapped URL: 201 Created')
        or diag($r->{content});
    $tok = token_of($r);
    like($tok, qr/^opaquelocktoken:[0-9a-f-]{36}$/, 'LOCK returns an opaquelocktoken');
    ok(-f "$live/new.txt", 'the LOCK created the file');
    is(-s "$live/new.txt", 0, '... empty');
    like($r->{content}, qr{<D:lockscope><D:exclusive/></D:lockscope>}, 'lockdiscovery in the body');

    like(lockdiscovery('/dav/new.txt'), qr{mailto:t\@example\.org},
         'the owner XML is kept');

    $r = lock_req('/dav/new.txt');
    is($r->{status}, 423, 'a second exclusive LOCK conflicts: 423');

    $r = put_if('/dav/new.txt', undef);
    is($r->{status}, 423, 'PUT without the token: 423');
    ok(length($r->{content} // ''), '... with a body');

    $r = $srv->put('/dav/new.txt', 'x', { If => "(<${tok}x>) (Not <DAV:no-lock>)" });
    is($r->{status}, 423, 'PUT with a corrupt token in If: 423, not 400');

    $r = put_if('/dav/new.txt', $tok, 'hello');
    ok($r->{status} >= 200 && $r->{status} < 300, "PUT with the token: $r->{status}");
    is(slurp("$live/new.txt"), 'hello', '... stored');

    $r = unlock_req('/dav/new.txt', $tok);
    is($r->{status}, 204, 'UNLOCK: 204');
    $r = put_if('/dav/new.txt', undef, 'again');
    ok($r->{status} >= 200 && $r->{status} < 300, "PUT after UNLOCK: $r->{status}");

    $r = $srv->request('UNLOCK', '/dav/new.txt', { 'Lock-Token' => "<$tok>" });
    ok($r->{status} >= 400 && $r->{status} < 500, "UNLOCK of a gone lock: $r->{status}");
}

# ------------------------------------------------------------ depth infinity
{
    is($srv->mkcol('/dav/coll')->{status}, 201, 'MKCOL /dav/coll');
    is($srv->mkcol('/dav/coll/sub')->{status}, 201, 'MKCOL /dav/coll/sub');
    ok($srv->put('/dav/coll/sub/m.txt', 'm')->{status} < 300, 'PUT a member');

    my $r = lock_req('/dav/coll', depth => 'infinity');
    is($r->{status}, 200, 'LOCK Depth: infinity on a collection: 200');
    my $ct = token_of($r);

    is(put_if('/dav/coll/sub/m.txt', undef)->{status}, 423,
       'PUT to a member without the token: 423');
    is(put_if('/dav/coll/sub/new.txt', undef)->{status}, 423,
       'PUT of a new member without the token: 423');
    is($srv->mkcol('/dav/coll/other')->{status}, 423,
       'MKCOL in the locked tree without the token: 423');
    like(lockdiscovery('/dav/coll/sub/m.txt'), qr/\Q$ct\E/,
         'a member shows the collection lock');
    is(lock_req('/dav/coll/sub/m.txt')->{status}, 423,
       'an exclusive LOCK of a member conflicts');

    $r = put_if('/dav/coll/sub/m.txt', $ct, 'member');
    ok($r->{status} >= 200 && $r->{status} < 300, "PUT to a member with the token: $r->{status}");
    $r = put_if('/dav/coll/sub/new.txt', $ct, 'new member');
    ok($r->{status} >= 200 && $r->{status} < 300, "PUT of a new member with the token: $r->{status}");

    # UNLOCK through a member's URL releases the collection's lock.
    $r = unlock_req('/dav/coll/sub/m.txt', $ct);
    is($r->{status}, 204, 'UNLOCK through a member URL: 204');
    $r = put_if('/dav/coll/sub/m.txt', undef, 'free');
    ok($r->{status} >= 200 && $r->{status} < 300, "PUT to the member after UNLOCK: $r->{status}");
    unlike(lockdiscovery('/dav/coll'), qr/activelock/, 'the collection is unlocked');

    # Depth 0 on a collection does not cover its members.
    $r = lock_req('/dav/coll', depth => '0');
    is($r->{status}, 200, 'LOCK Depth: 0 on a collection');
    my $t0 = token_of($r);
    $r = put_if('/dav/coll/sub/m.txt', undef, 'depth0');
    ok($r->{status} >= 200 && $r->{status} < 300, "... members stay writable: $r->{status}");
    is(unlock_req('/dav/coll', $t0)->{status}, 204, 'UNLOCK the depth 0 lock');
}

# ------------------------------------------------------------ shared locks
{
    ok($srv->put('/dav/shared.txt', 's')->{status} < 300, 'PUT shared.txt');
    my $r1 = lock_req('/dav/shared.txt', scope => 'shared');
    is($r1->{status}, 200, 'first shared LOCK: 200');
    my $r2 = lock_req('/dav/shared.txt', scope => 'shared');
    is($r2->{status}, 200, 'second shared LOCK: 200');
    isnt(token_of($r1), token_of($r2), '... with its own token');
    is(lock_req('/dav/shared.txt')->{status}, 423, 'an exclusive LOCK conflicts with them: 423');
    my $ld = lockdiscovery('/dav/shared.txt');
    is(scalar(() = $ld =~ /<D:activelock>/g), 2, 'lockdiscovery shows both');
    is(unlock_req('/dav/shared.txt', token_of($r1))->{status}, 204, 'UNLOCK the first');
    is(lock_req('/dav/shared.txt')->{status}, 423, 'the second still blocks an exclusive LOCK');
    is(unlock_req('/dav/shared.txt', token_of($r2))->{status}, 204, 'UNLOCK the second');
    my $r = lock_req('/dav/shared.txt');
    is($r->{status}, 200, 'now an exclusive LOCK succeeds');
    is(lock_req('/dav/shared.txt', scope => 'shared')->{status}, 423,
       'and a shared one conflicts with it');
    unlock_req('/dav/shared.txt', token_of($r));
}

# ------------------------------------------------------------ refresh, expiry
{
    ok($srv->put('/dav/t.txt', 't')->{status} < 300, 'PUT t.txt');
    my $r = lock_req('/dav/t.txt', timeout => 'Second-60');
    is($r->{status}, 200, 'LOCK with Timeout: Second-60');
    my $t = token_of($r);
    my $before = timeout_of($r->{content});
    ok(defined $before && $before <= 60, "timeout granted: ${\($before // '?')}");
    $r = $srv->request('LOCK', '/dav/t.txt', { If => "(<$t>)", Timeout => 'Second-3600' });
    is($r->{status}, 200, 'refresh: 200');
    my $after = timeout_of($r->{content});
    ok(defined $after && $after > 3000, "refresh extends the timeout: ${\($after // '?')}");
    $after = timeout_of(lockdiscovery('/dav/t.txt'));
    ok(defined $after && $after > 3000, "... as lockdiscovery shows: ${\($after // '?')}");
    is(unlock_req('/dav/t.txt', $t)->{status}, 204, 'UNLOCK');

    $r = lock_req('/dav/t.txt', timeout => 'Second-1');
    is($r->{status}, 200, 'LOCK with Timeout: Second-1');
    is(put_if('/dav/t.txt', undef)->{status}, 423, 'locked at first');
    sleep 2;
    $r = put_if('/dav/t.txt', undef, 'expired');
    ok($r->{status} >= 200 && $r->{status} < 300, "PUT after expiry: $r->{status}");
    unlike(lockdiscovery('/dav/t.txt'), qr/activelock/, 'an expired lock is not shown');
    $r = lock_req('/dav/t.txt');
    is($r->{status}, 200, 'an expired lock frees the resource for a new LOCK');
    unlock_req('/dav/t.txt', token_of($r));
}

# ------------------------------------------------------------ MOVE, DELETE
{
    ok($srv->put('/dav/mv.txt', 'mv')->{status} < 300, 'PUT mv.txt');
    my $r = lock_req('/dav/mv.txt');
    my $t = token_of($r);
    $r = $srv->request('MOVE', '/dav/mv.txt', { Destination => $srv->url('/dav/moved.txt') });
    is($r->{status}, 423, 'MOVE of a locked file without the token: 423');
    # Tagged: mod_dav evaluates an untagged list against the destination too.
    my $src = $srv->url('/dav/mv.txt');
    $r = $srv->request('MOVE', '/dav/mv.txt',
                       { Destination => $srv->url('/dav/moved.txt'), If => "<$src> (<$t>)" });
    is($r->{status}, 201, 'MOVE with the token: 201') or diag($r->{content});
    unlike(lockdiscovery('/dav/moved.txt'), qr/activelock/, 'the lock did not move along');
    $r = put_if('/dav/mv.txt', undef, 'new');
    ok($r->{status} >= 200 && $r->{status} < 300, "the source's lock is gone: PUT $r->{status}");

    is($srv->mkcol('/dav/del')->{status}, 201, 'MKCOL /dav/del');
    ok($srv->put('/dav/del/f.txt', 'f')->{status} < 300, 'PUT /dav/del/f.txt');
    my $ft = token_of(lock_req('/dav/del/f.txt'));
    $r = $srv->request('DELETE', '/dav/del');
    ok($r->{status} == 423 || $r->{status} == 424 || $r->{status} == 207,
       "DELETE of a tree with a locked member is refused: $r->{status}");
    ok(-f "$live/del/f.txt", '... and deletes nothing');
    $r = $srv->request('DELETE', '/dav/del',
                       { If => '<' . $srv->url('/dav/del/f.txt') . "> (<$ft>)" });
    is($r->{status}, 204, 'DELETE with the member\'s token: 204');
    is($srv->mkcol('/dav/del')->{status}, 201, 'MKCOL /dav/del again');
    $r = put_if('/dav/del/f.txt', undef, 'fresh');
    ok($r->{status} >= 200 && $r->{status} < 300, "DELETE removed the member's lock: PUT $r->{status}");
}

# ------------------------------------------------------------ concurrency
sub run_children {
    my ($n, $code) = @_;
    my @pids;
    for my $i (0 .. $n - 1) {
        my $pid = fork // die "fork: $!";
        if (!$pid) {
            my $rc = eval { $code->($i) } ? 0 : 1;
            POSIX::_exit($rc);
        }
        push @pids, $pid;
    }
    my @rc;
    for my $pid (@pids) {
        waitpid($pid, 0);
        push @rc, $? >> 8;
    }
    return @rc;
}

sub curl_lock {
    my ($url, $scope) = @_;
    my $body = lockinfo(scope => $scope // 'exclusive');
    my $out = `curl -s -o /dev/null -D - -X LOCK -H 'Content-Type: application/xml' --data-binary '$body' '$url'`;
    my ($status) = $out =~ m{^HTTP/\S+ (\d+)}m;
    my ($t) = $out =~ /^Lock-Token:\s*<([^>]+)>/mi;
    return ($status // 0, $t);
}

sub curl_unlock {
    my ($url, $t) = @_;
    my $code = `curl -s -o /dev/null -w '%{http_code}' -X UNLOCK -H 'Lock-Token: <$t>' '$url'`;
    return $code;
}

{
    is($srv->mkcol('/dav/conc')->{status}, 201, 'MKCOL /dav/conc');
    my $log_before = length $srv->error_log;

    # 8 processes, each locking and unlocking its own file 50 times.
    my @rc = run_children(8, sub {
        my ($i) = @_;
        my $url = $srv->url("/dav/conc/f$i.txt");
        for my $n (1 .. 50) {
            my ($st, $t) = curl_lock($url);
            die "LOCK $i/$n: $st\n" unless ($st == 200 || $st == 201) && $t;
            my $u = curl_unlock($url, $t);
            die "UNLOCK $i/$n: $u\n" unless $u == 204;
        }
        1;
    });
    is_deeply(\@rc, [(0) x 8], '8 processes x 50 LOCK/UNLOCK of distinct files all succeed');

    # 8 processes race for one exclusive lock: exactly one wins.
    ok($srv->put('/dav/conc/race.txt', 'r')->{status} < 300, 'PUT race.txt');
    my $dir = File::Temp::tempdir('race-XXXXXX', TMPDIR => 1, CLEANUP => 1);
    @rc = run_children(8, sub {
        my ($i) = @_;
        my ($st, $t) = curl_lock($srv->url('/dav/conc/race.txt'));
        spew("$dir/$i", "$st\n");
        1;
    });
    my @st = map { my $s = slurp("$dir/$_") // ''; chomp $s; $s } 0 .. 7;
    is(scalar(grep { $_ == 200 } @st), 1, 'racing exclusive LOCKs: exactly one 200')
        or diag("@st");
    is(scalar(grep { $_ == 423 } @st), 7, '... and seven 423') or diag("@st");

    # Shared locks in parallel on one file all succeed.
    ok($srv->put('/dav/conc/sh.txt', 's')->{status} < 300, 'PUT sh.txt');
    @rc = run_children(8, sub {
        my ($i) = @_;
        my $url = $srv->url('/dav/conc/sh.txt');
        for my $n (1 .. 10) {
            my ($st, $t) = curl_lock($url, 'shared');
            die "shared LOCK: $st\n" unless $st == 200 && $t;
            die "UNLOCK\n" unless curl_unlock($url, $t) == 204;
        }
        1;
    });
    is_deeply(\@rc, [(0) x 8], 'parallel shared LOCK/UNLOCK on one file all succeed');

    # mod_dav logs each refusal (423 and the like) at level error, and the
    # event MPM its capacity warnings: those are expected; nothing else is.
    my $log = substr($srv->error_log, $log_before);
    my @bad = grep { /:(?:error|crit|alert|emerg)\]/ && !/\[4\d\d, #\d+\]\s*$/
                     && !/\[mpm_\w+:/ } split /\n/, $log;
    is(scalar(@bad), 0, 'no errors in the error log') or diag(join "\n", @bad);
}

# ------------------------------------------------------------ corrupt database
# An unreadable database fails closed: its locks are never taken for none
# (t/31-lock-crash.t covers truncation, bad records and recovery).
{
    ok($srv->put('/dav/c.txt', 'c')->{status} < 300, 'PUT c.txt');
    my $t = token_of(lock_req('/dav/c.txt'));
    ok($t, 'locked c.txt');
    my $db = $srv->volume . '/state/locks.gdbm';
    ok(-f $db, 'the lock database is in state/');
    my $good = slurp($db);
    spew($db, 'this is not a GDBM file' x 100);
    my $r = put_if('/dav/c.txt', undef, 'after corruption');
    is($r->{status}, 500, 'PUT without the token while the database is unreadable: 500');
    like($r->{content}, qr/lock database cannot be read/, '... naming the cause');
    like($srv->error_log, qr{lock database \S*/state/locks\.gdbm is unusable},
         'the log names the file');
    is(lock_req('/dav/c.txt')->{status}, 500, 'a LOCK is refused too');
    is(slurp("$live/c.txt"), 'c', 'the locked file is unchanged');
    spew($db, $good);
    is(put_if('/dav/c.txt', undef)->{status}, 423, 'restored: the lock is enforced again');
    is(unlock_req('/dav/c.txt', $t)->{status}, 204, 'UNLOCK');
    $r = put_if('/dav/c.txt', undef, 'free');
    ok($r->{status} >= 200 && $r->{status} < 300, "unlocked: PUT $r->{status}");
}

unlike($srv->error_log, qr/AH00052|Segmentation fault/, 'no httpd child crashed');

done_testing;
