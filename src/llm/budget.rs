//! Token budgets, pure and clock-free: which limits a role has (`llm_limits`), the fixed minute
//! and day windows (UTC) a call counts against, and what a call reserves before it starts. The
//! store reserves atomically; the budget service settles each reservation to the real usage.

use std::collections::HashMap;

/// One role's token limits (None: that window is not limited).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenLimits {
    pub per_minute: Option<u64>,
    pub per_day: Option<u64>,
    pub unlimited: bool,
}

impl TokenLimits {
    /// `self` with `over`'s settings where it has them (a role's entry over the default).
    pub fn overlaid(self, over: TokenLimits) -> TokenLimits {
        TokenLimits { per_minute: over.per_minute.or(self.per_minute), per_day: over.per_day.or(self.per_day), unlimited: over.unlimited }
    }
}

/// `llm_limits`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BudgetRules {
    pub default: TokenLimits,
    /// Each role's entry, already overlaid on the default.
    pub roles: HashMap<String, TokenLimits>,
    /// Reserved for completions when a request names no `max_tokens`.
    pub reserve_tokens: u64,
}

impl BudgetRules {
    /// The limits of a caller with `role`.
    pub fn limits(&self, role: Option<&str>) -> TokenLimits {
        role.and_then(|r| self.roles.get(r)).copied().unwrap_or(self.default)
    }

    /// What a call reserves: its completion allowance plus its prompt estimate.
    pub fn reservation(&self, max_tokens: Option<u64>, prompt_estimate: u64) -> u64 {
        max_tokens.unwrap_or(self.reserve_tokens).saturating_add(prompt_estimate)
    }
}

/// A window's length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Span {
    Minute,
    Day,
}

impl Span {
    pub fn seconds(self) -> u64 {
        match self {
            Span::Minute => 60,
            Span::Day => 86_400,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Span::Minute => "minute",
            Span::Day => "day",
        }
    }
}

/// One window a call counts against: which span, which one of them (its number since the
/// epoch), its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Window {
    pub span: Span,
    pub index: u64,
    pub limit: u64,
}

impl Window {
    /// The store key's tail for this window (`m:29000000`, `d:20000`).
    pub fn key(&self) -> String {
        let tag = match self.span {
            Span::Minute => "m",
            Span::Day => "d",
        };
        format!("{tag}:{}", self.index)
    }

    /// When it ends (unix seconds).
    pub fn ends_at(&self) -> u64 {
        (self.index + 1) * self.span.seconds()
    }

    /// Seconds from `now` until it ends (at least 1).
    pub fn reset_in(&self, now: u64) -> u64 {
        self.ends_at().saturating_sub(now).max(1)
    }
}

/// The limit of a window that is counted but not limited (the largest a Lua number holds exactly
/// enough for a comparison).
pub const UNLIMITED: u64 = i64::MAX as u64;

impl Window {
    /// Whether it limits (or only counts).
    pub fn limits(&self) -> bool {
        self.limit < UNLIMITED
    }
}

/// The minute and the day window a caller with `limits` counts against at `now`; a window
/// without a limit (or every window, when unlimited) only counts.
pub fn windows(limits: TokenLimits, now: u64) -> [Window; 2] {
    let limit = |l: Option<u64>| if limits.unlimited { UNLIMITED } else { l.unwrap_or(UNLIMITED).min(UNLIMITED) };
    [
        Window { span: Span::Minute, index: now / 60, limit: limit(limits.per_minute) },
        Window { span: Span::Day, index: now / 86_400, limit: limit(limits.per_day) },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> BudgetRules {
        let default = TokenLimits { per_minute: Some(20_000), per_day: Some(200_000), unlimited: false };
        let roles = [
            ("admin".to_string(), default.overlaid(TokenLimits { unlimited: true, ..Default::default() })),
            ("viewer".to_string(), default.overlaid(TokenLimits { per_day: Some(20_000), ..Default::default() })),
        ]
        .into();
        BudgetRules { default, roles, reserve_tokens: 1024 }
    }

    #[test]
    fn roles_overlay_the_default() {
        let r = rules();
        assert_eq!(r.limits(Some("viewer")), TokenLimits { per_minute: Some(20_000), per_day: Some(20_000), unlimited: false });
        assert!(r.limits(Some("admin")).unlimited);
        assert_eq!(r.limits(Some("user")), r.default);
        assert_eq!(r.limits(None), r.default);
    }

    #[test]
    fn reservations_cover_the_completion_and_the_prompt() {
        let r = rules();
        assert_eq!(r.reservation(Some(100), 30), 130);
        assert_eq!(r.reservation(None, 30), 1054);
        assert_eq!(r.reservation(Some(u64::MAX), 30), u64::MAX);
    }

    #[test]
    fn windows_are_fixed_minutes_and_utc_days() {
        let now = 1_764_400_059;
        let w = windows(rules().default, now);
        assert_eq!(w.len(), 2);
        assert_eq!((w[0].span, w[0].index, w[0].limit), (Span::Minute, now / 60, 20_000));
        assert_eq!((w[1].span, w[1].index, w[1].limit), (Span::Day, now / 86_400, 200_000));
        assert_eq!(w[0].reset_in(now), 60 - now % 60);
        assert_eq!(w[1].ends_at() % 86_400, 0);
        assert_eq!(w[0].key(), format!("m:{}", now / 60));
        // The last second of a window still has a second to go; unlimited has no windows.
        let last = Window { span: Span::Minute, index: 10, limit: 1 };
        assert_eq!(last.reset_in(659), 1);
        assert_eq!(last.reset_in(700), 1);
        assert!(w.iter().all(Window::limits));
        assert!(!windows(rules().limits(Some("admin")), now).iter().any(Window::limits));
        let day_only = windows(TokenLimits { per_day: Some(5), ..Default::default() }, now);
        assert_eq!((day_only[0].limits(), day_only[1].limits(), day_only[1].limit), (false, true, 5));
    }
}
