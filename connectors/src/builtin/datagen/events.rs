//! The events Datagen makes: Nexmark's persons, auctions and bids as Connect structs, and a
//! web shop's page views.

use super::*;
/// The values' and keys' schemas, made once and shared by every record.
#[derive(Debug)]
pub(super) struct Schemas {
    pub(super) key: SchemaRef,
    pub(super) person: SchemaRef,
    pub(super) auction: SchemaRef,
    pub(super) bid: SchemaRef,
    pub(super) event: SchemaRef,
    pub(super) click: SchemaRef,
}

pub(super) static SCHEMAS: LazyLock<Schemas> = LazyLock::new(Schemas::new);

impl Schemas {
    pub(super) fn new() -> Schemas {
        let int32 = Schema::primitive(Type::Int32);
        let int64 = Schema::primitive(Type::Int64);
        let string = Schema::primitive(Type::String);
        let time = Arc::new(Schema::timestamp());
        let opt_int64 = Schema::optional_primitive(Type::Int64);
        let opt_string = Schema::optional_primitive(Type::String);
        let opt_time = Arc::new(Schema::timestamp().into_optional());
        let structure = |name: &str, fields: &[(&str, &SchemaRef)]| {
            let fields = fields.iter().map(|(n, s)| (n.to_string(), Arc::clone(s)));
            Arc::new(Schema::structure(fields).named(name))
        };
        Schemas {
            key: string.clone(),
            person: structure(
                "freshet.datagen.nexmark.Person",
                &[
                    ("id", &int64),
                    ("name", &string),
                    ("email_address", &string),
                    ("credit_card", &string),
                    ("city", &string),
                    ("state", &string),
                    ("date_time", &time),
                    ("extra", &string),
                ],
            ),
            auction: structure(
                "freshet.datagen.nexmark.Auction",
                &[
                    ("id", &int64),
                    ("item_name", &string),
                    ("description", &string),
                    ("initial_bid", &int64),
                    ("reserve", &int64),
                    ("date_time", &time),
                    ("expires", &time),
                    ("seller", &int64),
                    ("category", &int64),
                    ("extra", &string),
                ],
            ),
            bid: structure(
                "freshet.datagen.nexmark.Bid",
                &[
                    ("auction", &int64),
                    ("bidder", &int64),
                    ("price", &int64),
                    ("channel", &string),
                    ("url", &string),
                    ("date_time", &time),
                    ("extra", &string),
                ],
            ),
            // The order of the Nexmark benchmark's mixed topic; `event_values` relies on it.
            event: structure(
                "freshet.datagen.nexmark.Event",
                &[
                    ("event_type", &int32),
                    ("id", &opt_int64),
                    ("name", &opt_string),
                    ("email_address", &opt_string),
                    ("credit_card", &opt_string),
                    ("city", &opt_string),
                    ("state", &opt_string),
                    ("date_time", &time),
                    ("extra", &string),
                    ("item_name", &opt_string),
                    ("description", &opt_string),
                    ("initial_bid", &opt_int64),
                    ("reserve", &opt_int64),
                    ("expires", &opt_time),
                    ("seller", &opt_int64),
                    ("category", &opt_int64),
                    ("auction", &opt_int64),
                    ("bidder", &opt_int64),
                    ("price", &opt_int64),
                    ("channel", &opt_string),
                    ("url", &opt_string),
                ],
            ),
            click: structure(
                "freshet.datagen.clickstream.PageView",
                &[
                    ("user_id", &int64),
                    ("session_id", &string),
                    ("url", &string),
                    ("referrer", &opt_string),
                    ("user_agent", &string),
                    ("ip", &string),
                    ("status", &int32),
                    ("bytes", &int64),
                    ("timestamp", &time),
                ],
            ),
        }
    }
}

/// Which events of the connector's sequence a task generates: every `count`-th from `index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Slice {
    pub(super) index: u64,
    pub(super) count: u64,
}

impl Slice {
    /// The number in the connector's sequence of the task's event at `position`.
    pub(super) fn event_number(self, position: u64) -> u64 {
        self.index + position * self.count
    }

    /// The task's share of `iterations` events (`None`: no end): the sequence's first
    /// `iterations` events that are the task's.
    pub(super) fn share(self, iterations: i64) -> Option<u64> {
        let total = u64::try_from(iterations).ok()?;
        Some(if total > self.index { (total - self.index - 1) / self.count + 1 } else { 0 })
    }
}

/// The events themselves.
pub(super) enum Events {
    /// Nexmark's generator, at the task's next event, stepping over the other tasks'.
    Nexmark(Box<EventGenerator>),
    /// Page views: the number of the next one and the step to the task's one after.
    Clicks { seed: u64, next: u64, step: u64 },
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Events::Nexmark(g) => write!(f, "Nexmark(offset {})", g.offset()),
            Events::Clicks { next, step, .. } => write!(f, "Clicks(next {next}, step {step})"),
        }
    }
}

/// Generates a task's records, from a position on.
#[derive(Debug)]
pub(super) struct Generator {
    pub(super) quickstart: Quickstart,
    pub(super) topic: String,
    pub(super) events: Events,
}

impl Generator {
    /// The generator of `slice`'s events from its `position`-th on. `base_time_ms` starts
    /// Nexmark's timeline, which runs at `events_per_second` (all kinds, all tasks), or at
    /// Nexmark's default rate when `None`.
    pub(super) fn new(
        quickstart: Quickstart,
        topic: &str,
        seed: u64,
        slice: Slice,
        position: u64,
        base_time_ms: u64,
        events_per_second: Option<f64>,
    ) -> Generator {
        let events = match quickstart.nexmark_kind() {
            Some(kind) => {
                let mut config = NexmarkConfig { base_time: base_time_ms, ..NexmarkConfig::default() };
                if let Some(rate) = events_per_second {
                    // Nexmark's rates are whole events per `us_per_unit` microseconds: per 1000 s
                    // keeps three decimals of a rate per second.
                    let per_1000_s = (rate * 1000.0).round().clamp(1.0, usize::MAX as f64) as usize;
                    config.first_rate = per_1000_s;
                    config.next_rate = per_1000_s;
                    config.us_per_unit = 1_000_000_000;
                }
                // With a kind, the generator's offsets count events of that kind only.
                let generator =
                    EventGenerator::new(config).with_offset(slice.event_number(position)).with_step(slice.count);
                Events::Nexmark(Box::new(match kind {
                    Some(kind) => generator.with_type_filter(kind),
                    None => generator,
                }))
            }
            None => Events::Clicks { seed, next: slice.event_number(position), step: slice.count },
        };
        Generator { quickstart, topic: topic.to_string(), events }
    }

    /// The next record; `now_ms` stamps page views.
    pub(super) fn next_record(&mut self, now_ms: i64) -> ConnectRecord {
        let schemas = &*SCHEMAS;
        let (key, schema, values, timestamp) = match &mut self.events {
            Events::Nexmark(generator) => {
                let event = generator.next().expect("Nexmark's generator never ends");
                let time = event.timestamp() as i64;
                let (key, schema, values) = match (self.quickstart, event) {
                    (Quickstart::Nexmark, event) => {
                        let key = match &event {
                            Event::Person(p) => p.id,
                            Event::Auction(a) => a.id,
                            Event::Bid(b) => b.auction,
                        };
                        (key, &schemas.event, event_values(event))
                    }
                    (_, Event::Person(p)) => (p.id, &schemas.person, person_values(p)),
                    (_, Event::Auction(a)) => (a.id, &schemas.auction, auction_values(a)),
                    (_, Event::Bid(b)) => (b.auction, &schemas.bid, bid_values(b)),
                };
                (key.to_string(), schema, values, time)
            }
            Events::Clicks { seed, next, step } => {
                let click = PageView::generate(*seed, *next);
                *next += *step;
                (click.user_id.to_string(), &schemas.click, click.into_values(now_ms), now_ms)
            }
        };
        debug_assert_eq!(values.len(), schema.fields.len());
        let value = Value::Struct(Struct { schema: Arc::clone(schema), values });
        let mut record = ConnectRecord::new(self.topic.clone(), Some(Arc::clone(schema)), value)
            .with_key(Some(Arc::clone(&schemas.key)), Value::String(key));
        record.timestamp = Some(timestamp);
        record
    }
}

pub(super) fn int(v: usize) -> Value {
    Value::Int64(v as i64)
}

pub(super) fn time(ms: u64) -> Value {
    Value::Int64(ms as i64)
}

/// A person's values, in its schema's order.
pub(super) fn person_values(p: Person) -> Vec<Value> {
    vec![
        int(p.id),
        Value::String(p.name),
        Value::String(p.email_address),
        Value::String(p.credit_card),
        Value::String(p.city),
        Value::String(p.state.to_ascii_uppercase()),
        time(p.date_time),
        Value::String(p.extra),
    ]
}

/// An auction's values, in its schema's order.
pub(super) fn auction_values(a: Auction) -> Vec<Value> {
    vec![
        int(a.id),
        Value::String(a.item_name),
        Value::String(a.description),
        int(a.initial_bid),
        int(a.reserve),
        time(a.date_time),
        time(a.expires),
        int(a.seller),
        int(a.category),
        Value::String(a.extra),
    ]
}

/// A bid's values, in its schema's order.
pub(super) fn bid_values(b: Bid) -> Vec<Value> {
    vec![
        int(b.auction),
        int(b.bidder),
        int(b.price),
        Value::String(b.channel),
        Value::String(b.url),
        time(b.date_time),
        Value::String(b.extra),
    ]
}

/// Any event's values in the flat schema: `event_type`, then the person's fields (`id` to
/// `extra`), the auction's others (`item_name` to `category`) and the bid's others (`auction`
/// to `url`).
pub(super) fn event_values(event: Event) -> Vec<Value> {
    const NULL: Value = Value::Null;
    let mut values = Vec::with_capacity(21);
    match event {
        Event::Person(p) => {
            values.push(Value::Int32(0));
            values.extend(person_values(p));
            values.extend([NULL; 12]);
        }
        Event::Auction(a) => {
            values.extend([Value::Int32(1), int(a.id)]);
            values.extend([NULL; 5]);
            values.extend([time(a.date_time), Value::String(a.extra)]);
            values.extend([
                Value::String(a.item_name),
                Value::String(a.description),
                int(a.initial_bid),
                int(a.reserve),
                time(a.expires),
                int(a.seller),
                int(a.category),
            ]);
            values.extend([NULL; 5]);
        }
        Event::Bid(b) => {
            values.push(Value::Int32(2));
            values.extend([NULL; 6]);
            values.extend([time(b.date_time), Value::String(b.extra)]);
            values.extend([NULL; 7]);
            values.extend([
                int(b.auction),
                int(b.bidder),
                int(b.price),
                Value::String(b.channel),
                Value::String(b.url),
            ]);
        }
    }
    values
}

/// SplitMix64's finalizer: spreads a number's bits, to seed an RNG per event or per user.
pub(super) fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Users of the shop; the first [`HOT_USERS`] make half the views.
pub(super) const USERS: u64 = 10_000;
pub(super) const HOT_USERS: u64 = 100;
/// How many views of the sequence a session lasts (staggered per user).
pub(super) const SESSION_VIEWS: u64 = 5_000;
pub(super) const SHOP: &str = "https://shop.example.com";
pub(super) const SEARCH_TERMS: [&str; 8] =
    ["shoes", "jacket", "lamp", "coffee", "headphones", "backpack", "desk", "kettle"];
pub(super) const CATEGORIES: [&str; 6] = ["clothing", "home", "kitchen", "electronics", "outdoor", "books"];
pub(super) const EXTERNAL_REFERRERS: [&str; 6] = [
    "https://www.google.com/",
    "https://www.bing.com/",
    "https://duckduckgo.com/",
    "https://news.ycombinator.com/",
    "https://t.co/",
    "https://www.facebook.com/",
];
pub(super) const USER_AGENTS: [&str; 6] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Mobile Safari/537.36",
    "curl/8.5.0",
];

/// A page view, all but its time.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct PageView {
    pub(super) user_id: u64,
    pub(super) session_id: String,
    pub(super) url: String,
    pub(super) referrer: Option<String>,
    pub(super) user_agent: &'static str,
    pub(super) ip: String,
    pub(super) status: i32,
    pub(super) bytes: u64,
}

impl PageView {
    /// The view numbered `number` of the sequence `seed` gives: a function of both alone, so any
    /// task can start anywhere in the sequence.
    pub(super) fn generate(seed: u64, number: u64) -> PageView {
        let mut rng = fastrand::Rng::with_seed(mix(seed ^ mix(number)));
        let user_id = if rng.bool() { rng.u64(1..=HOT_USERS) } else { rng.u64(1..=USERS) };
        // What stays with a user: their browser and address, from a seed of their own.
        let user_hash = mix(seed ^ mix(user_id.wrapping_mul(0x2545_F491_4F6C_DD1D)));
        let user_agent = USER_AGENTS[(user_hash % USER_AGENTS.len() as u64) as usize];
        let octets = user_hash.to_be_bytes();
        let ip = format!("{}.{}.{}.{}", 11 + octets[0] % 200, octets[1], octets[2], 1 + octets[3] % 254);
        // A user's sessions end at staggered points of the sequence.
        let session = (number + user_hash % SESSION_VIEWS) / SESSION_VIEWS;
        let session_id = format!("{:016x}", mix(user_hash ^ mix(session)));
        let url = match rng.u8(0..100) {
            0..15 => "/".to_string(),
            15..30 => format!("/search?q={}", SEARCH_TERMS[rng.usize(0..SEARCH_TERMS.len())]),
            30..65 => format!("/products/{}", rng.u32(1..=5_000)),
            65..75 => format!("/products?category={}", CATEGORIES[rng.usize(0..CATEGORIES.len())]),
            75..85 => "/cart".to_string(),
            85..90 => "/checkout".to_string(),
            90..95 => "/account".to_string(),
            _ => "/help".to_string(),
        };
        let referrer = match rng.u8(0..100) {
            0..35 => None,
            35..80 => Some(format!("{SHOP}/products/{}", rng.u32(1..=5_000))),
            _ => Some(EXTERNAL_REFERRERS[rng.usize(0..EXTERNAL_REFERRERS.len())].to_string()),
        };
        let (status, bytes) = match rng.u16(0..1000) {
            0..880 => (200, rng.u64(1_000..=250_000)),
            880..920 => (304, 0),
            920..950 => (302, rng.u64(200..=600)),
            950..990 => (404, rng.u64(500..=2_000)),
            _ => (500, rng.u64(200..=1_000)),
        };
        PageView { user_id, session_id, url, referrer, user_agent, ip, status, bytes }
    }

    /// Its values in the page view schema's order, stamped `time_ms`.
    pub(super) fn into_values(self, time_ms: i64) -> Vec<Value> {
        vec![
            Value::Int64(self.user_id as i64),
            Value::String(self.session_id),
            Value::String(self.url),
            self.referrer.map_or(Value::Null, Value::String),
            Value::String(self.user_agent.to_string()),
            Value::String(self.ip),
            Value::Int32(self.status),
            Value::Int64(self.bytes as i64),
            Value::Int64(time_ms),
        ]
    }
}
