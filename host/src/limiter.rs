//! The server's one rate limiter: token buckets keyed by whatever is limited (a user, an API
//! key, a client address), local to the node by default, shared by every node through Redis when
//! `REDIS_URL` is set.
//!
//! Each bucket holds `burst` tokens and refills at `per_minute` tokens a minute. It is kept as
//! one number — GCRA's "theoretical arrival time" (`tat`): the moment the bucket will be full
//! again — so a take is one comparison and one write, in process or in one Redis script (which
//! reads Redis's own clock, so nodes with skewed clocks share one bucket correctly). If Redis
//! cannot be reached the limiter lets the request through and says so in the log: a limiter
//! outage must not become a service outage.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A bucket's shape. `per_minute == 0` turns the limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub per_minute: u32,
    pub burst: u32,
}

impl Rate {
    /// `per_minute`, with a bucket that holds a minute's worth.
    pub fn per_minute(per_minute: u32) -> Self {
        Rate {
            per_minute,
            burst: per_minute,
        }
    }

    /// Microseconds for one token to come back; at least one, so a rate past 60 million a
    /// minute still leaves the bucket room (at 0 every take would have to land exactly on time).
    fn interval_us(self) -> u64 {
        (60_000_000 / u64::from(self.per_minute.max(1))).max(1)
    }
}

/// The limits the API enforces, from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct Rates {
    /// Executions a user may start (`user:{id}`).
    pub executions: Rate,
    /// Failed authentications from one client address (`auth:{address}`).
    pub auth_failures: Rate,
    /// Password sign-ins for one email from one client address (`login:{email}:{address}`).
    pub logins: Rate,
    /// WebSocket tickets a user (or API key) may take (`ws-ticket:user:{id}`, `ws-ticket:key:{id}`): each is a row in the
    /// store, so a loop of them would be writes for free.
    pub ws_tickets: Rate,
}

/// Refused: try again after this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exceeded {
    pub retry_after: Duration,
}

/// Past this many buckets held in process, full ones are forgotten (a full bucket and an absent
/// one are the same). If most are still filling (many clients at once), the next pruning waits
/// until the map has doubled: a scan is paid for by as many new buckets, never by every call.
/// A bucket is full again within its refill time (a minute for these rates), so the map holds
/// about the keys seen in the last minute.
const PRUNE_ABOVE: usize = 100_000;

/// In-process buckets: each key's theoretical arrival time (µs), and the size that prunes next.
struct Local {
    tats: HashMap<String, u64>,
    prune_at: usize,
}

impl Default for Local {
    fn default() -> Self {
        Local {
            tats: HashMap::new(),
            prune_at: PRUNE_ABOVE,
        }
    }
}

/// GCRA in Redis: KEYS[1] the bucket, ARGV interval (µs), burst, cost, mode (see [`Mode`]).
/// Returns 0 when there is room, else the microseconds to wait.
const SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local mode = ARGV[4]
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + cost * interval
local over = new_tat - now - burst * interval
if mode == 'peek' then
  if over > 0 then return math.ceil(over) end
  return 0
end
if over > 0 and mode == 'take' then return math.ceil(over) end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
return 0
";

/// What a call does to its bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Takes the tokens if they are there.
    Take,
    /// Only says whether they are there.
    Peek,
    /// Takes them even if they are not: the bucket goes into debt, and later takes wait until
    /// it has refilled past it (for what was used already, e.g. a call's tokens).
    Force,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Mode::Take => "take",
            Mode::Peek => "peek",
            Mode::Force => "force",
        }
    }
}

/// The bucket of an API key's requests (`"rpm"`) or tokens (`"tpm"`) a minute.
pub fn api_key_bucket(key_id: &str, what: &str) -> String {
    format!("apikey:{key_id}:{what}")
}

/// Where the buckets live.
enum Buckets {
    Local(Mutex<Local>),
    Redis {
        conn: redis::aio::ConnectionManager,
        script: redis::Script,
        prefix: String,
    },
}

pub struct Limiter {
    buckets: Buckets,
}

impl Limiter {
    /// Buckets in this process.
    pub fn local() -> Self {
        Limiter {
            buckets: Buckets::Local(Mutex::default()),
        }
    }

    /// Buckets in Redis (keys `{prefix}:rate:{key}`), shared by every node using it.
    pub async fn redis(url: &str, prefix: &str) -> Result<Self, redis::RedisError> {
        let conn = redis::Client::open(url)?.get_connection_manager().await?;
        Ok(Limiter {
            buckets: Buckets::Redis {
                conn,
                script: redis::Script::new(SCRIPT),
                prefix: prefix.to_string(),
            },
        })
    }

    /// Takes `cost` tokens from `key`'s bucket, or says how long until they are there.
    pub async fn take(&self, key: &str, rate: Rate, cost: u32) -> Result<(), Exceeded> {
        self.apply(key, rate, cost, Mode::Take).await
    }

    /// Whether `cost` tokens are in `key`'s bucket now, taking none.
    pub async fn check(&self, key: &str, rate: Rate, cost: u32) -> Result<(), Exceeded> {
        self.apply(key, rate, cost, Mode::Peek).await
    }

    /// Takes `cost` tokens whether or not they are there (what was used already): past the
    /// bucket's size, later takes wait until it has refilled past the debt.
    pub async fn charge(&self, key: &str, rate: Rate, cost: u32) {
        let _ = self.apply(key, rate, cost, Mode::Force).await;
    }

    async fn apply(&self, key: &str, rate: Rate, cost: u32, mode: Mode) -> Result<(), Exceeded> {
        if rate.per_minute == 0 {
            return Ok(());
        }
        let wait_us = match &self.buckets {
            Buckets::Local(map) => take_local(map, key, rate, cost, mode, now_us()),
            Buckets::Redis {
                conn,
                script,
                prefix,
            } => {
                let mut conn = conn.clone();
                let taken: redis::RedisResult<u64> = script
                    .key(format!("{prefix}:rate:{key}"))
                    .arg(rate.interval_us())
                    .arg(rate.burst)
                    .arg(cost)
                    .arg(mode.as_str())
                    .invoke_async(&mut conn)
                    .await;
                match taken {
                    Ok(wait) => wait,
                    Err(e) => {
                        tracing::warn!(error = %e, "the rate limiter could not reach Redis; not limiting");
                        0
                    }
                }
            }
        };
        match wait_us {
            0 => Ok(()),
            // Retry-After is in whole seconds: round up so a retry at that time succeeds.
            us => Err(Exceeded {
                retry_after: Duration::from_secs(us.div_ceil(1_000_000).max(1)),
            }),
        }
    }
}

/// Microseconds on a clock that never goes back (a wall clock stepped back by NTP would make
/// every bucket look overdrawn); the in-process buckets are never compared across processes.
fn now_us() -> u64 {
    static ORIGIN: std::sync::LazyLock<Instant> = std::sync::LazyLock::new(Instant::now);
    // Offset so a fresh process's first bucket times are far from zero, like wall-clock ones.
    1_000_000_000 + ORIGIN.elapsed().as_micros() as u64
}

/// The local bucket arithmetic; `now` in µs. Returns 0 when there is room, else µs to wait.
fn take_local(map: &Mutex<Local>, key: &str, rate: Rate, cost: u32, mode: Mode, now: u64) -> u64 {
    let interval = rate.interval_us();
    // A poisoned lock only means a panic elsewhere while it was held; the map is intact.
    let mut local = map.lock().unwrap_or_else(|p| p.into_inner());
    if local.tats.len() >= local.prune_at {
        local.tats.retain(|_, tat| *tat > now);
        local.prune_at = PRUNE_ABOVE.max(2 * local.tats.len());
    }
    let map = &mut local.tats;
    let tat = map.get(key).copied().unwrap_or(now).max(now);
    let new_tat = tat + u64::from(cost) * interval;
    let limit = now + u64::from(rate.burst) * interval;
    let wait = new_tat.saturating_sub(limit);
    match mode {
        Mode::Peek => return wait,
        Mode::Take if wait > 0 => return wait,
        _ => {}
    }
    map.insert(key.to_string(), new_tat);
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_too_high_to_count_in_microseconds_still_admits() {
        let map = Mutex::default();
        let rate = Rate::per_minute(100_000_000);
        let t0 = 1_000_000_000;
        // Two threads read the clock, then take the lock in the other order: the later take
        // carries an earlier time.
        assert_eq!(take_local(&map, "u", rate, 1, Mode::Take, t0 + 5), 0);
        assert_eq!(take_local(&map, "u", rate, 1, Mode::Take, t0), 0);
    }

    #[test]
    fn a_bucket_gives_its_burst_then_refills_at_its_rate() {
        let map = Mutex::default();
        let rate = Rate {
            per_minute: 60,
            burst: 3,
        };
        let t0 = 1_000_000_000;
        for _ in 0..3 {
            assert_eq!(take_local(&map, "u", rate, 1, Mode::Take, t0), 0);
        }
        // Empty: the next token is a second away.
        assert_eq!(take_local(&map, "u", rate, 1, Mode::Take, t0), 1_000_000);
        // Another key has its own bucket.
        assert_eq!(take_local(&map, "v", rate, 1, Mode::Take, t0), 0);
        // A second later, exactly one more.
        assert_eq!(
            take_local(&map, "u", rate, 1, Mode::Take, t0 + 1_000_000),
            0
        );
        assert!(take_local(&map, "u", rate, 1, Mode::Take, t0 + 1_000_000) > 0);
        // Idle for a long while: full again, never more than the burst.
        let later = t0 + 3_600_000_000;
        for _ in 0..3 {
            assert_eq!(take_local(&map, "u", rate, 1, Mode::Take, later), 0);
        }
        assert!(take_local(&map, "u", rate, 1, Mode::Take, later) > 0);
    }

    #[test]
    fn full_buckets_are_forgotten_and_a_map_of_filling_ones_is_not_scanned_on_every_call() {
        let map = Mutex::<Local>::default();
        let rate = Rate {
            per_minute: 60,
            burst: 3,
        };
        let t0 = 1_000_000_000;
        // As many clients as prune a map, each taking one token: none is full.
        for i in 0..PRUNE_ABOVE {
            assert_eq!(
                take_local(&map, &format!("k{i}"), rate, 1, Mode::Take, t0),
                0
            );
        }
        assert_eq!(take_local(&map, "one more", rate, 1, Mode::Take, t0), 0);
        {
            let local = map.lock().expect("lock");
            assert_eq!(local.tats.len(), PRUNE_ABOVE + 1, "nothing was full");
            assert_eq!(local.prune_at, 2 * PRUNE_ABOVE, "the next scan waits");
        }
        // A minute later those buckets are full again: the next pruning forgets them.
        let later = t0 + 60_000_000;
        for i in 0..PRUNE_ABOVE {
            take_local(&map, &format!("n{i}"), rate, 1, Mode::Take, later);
        }
        let local = map.lock().expect("lock");
        assert!(
            !local.tats.keys().any(|k| k.starts_with('k')),
            "the full buckets were forgotten"
        );
        assert!(local.tats.len() <= PRUNE_ABOVE, "{}", local.tats.len());
    }

    #[test]
    fn a_cost_larger_than_the_burst_is_never_granted() {
        let map = Mutex::default();
        let rate = Rate::per_minute(10);
        assert!(take_local(&map, "u", rate, 11, Mode::Take, 5_000_000) > 0);
        // Peeking takes nothing; a forced charge goes into debt, and takes wait it out.
        assert_eq!(take_local(&map, "u", rate, 10, Mode::Peek, 5_000_000), 0);
        assert_eq!(take_local(&map, "u", rate, 10, Mode::Peek, 5_000_000), 0);
        assert_eq!(take_local(&map, "u", rate, 10, Mode::Take, 5_000_000), 0);
        let t = 5_000_000;
        assert_eq!(take_local(&map, "v", rate, 25, Mode::Force, t), 0);
        assert!(take_local(&map, "v", rate, 1, Mode::Peek, t) > 0);
        // 25 used of 10 a minute: the bucket has a token again after 16 × 6 s.
        assert!(take_local(&map, "v", rate, 1, Mode::Take, t + 95_000_000) > 0);
        assert_eq!(
            take_local(&map, "v", rate, 1, Mode::Peek, t + 96_000_000),
            0
        );
        assert_eq!(
            take_local(&map, "v", rate, 1, Mode::Take, t + 96_000_000),
            0
        );
    }

    #[tokio::test]
    async fn zero_per_minute_is_off_and_refusals_round_retry_after_up() {
        let limiter = Limiter::local();
        let off = Rate::per_minute(0);
        for _ in 0..1000 {
            assert!(limiter.take("k", off, 1).await.is_ok());
        }
        let one = Rate::per_minute(1);
        assert!(limiter.take("k", one, 1).await.is_ok());
        let refused = limiter.take("k", one, 1).await.expect_err("empty");
        assert!(
            (59..=60).contains(&refused.retry_after.as_secs()),
            "{refused:?}"
        );
    }
}
