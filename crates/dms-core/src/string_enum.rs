//! Enums whose variants each stand for one fixed string (an error name Step Functions matches, a DMS
//! status, an event, a check status): the string is written once, next to its variant, and `ALL`,
//! `as_str`, `parse`, `Display` and serde all come from that one line. A string that names no variant
//! parses to `None` and fails deserialisation with the accepted values listed: unknown input is refused,
//! never mapped to a default.

/// `string_enum! { pub enum Name { Variant => "text", ... } }` defines the enum (Debug, Clone, Copy,
/// PartialEq, Eq, Hash; more derives can be given as attributes), `Name::ALL` in declaration order,
/// `as_str`, `parse`, `Display`, and serde as the text. `string_enum! { labels: ... }` leaves serde out,
/// for an enum whose serialised form is not its text.
macro_rules! string_enum {
    (labels: $(#[$meta:meta])* $vis:vis enum $name:ident {
        $( $(#[$vmeta:meta])* $variant:ident => $text:literal ),+ $(,)?
    }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: [$name; [$($text),+].len()] = [$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $text, )+
                }
            }

            /// The variant whose text this is exactly; None for any other text.
            pub fn parse(text: &str) -> Option<$name> {
                match text {
                    $( $text => Some($name::$variant), )+
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl $crate::string_enum::FixedText for $name {
            fn parse_text(text: &str) -> Option<Self> {
                $name::parse(text)
            }

            fn text(self) -> &'static str {
                self.as_str()
            }
        }
    };
    ($(#[$meta:meta])* $vis:vis enum $name:ident {
        $( $(#[$vmeta:meta])* $variant:ident => $text:literal ),+ $(,)?
    }) => {
        string_enum! { labels: $(#[$meta])* $vis enum $name { $( $(#[$vmeta])* $variant => $text ),+ } }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                $name::parse(&text).ok_or_else(|| {
                    serde::de::Error::custom(format!(
                        "unknown {} `{}`: expected one of {}",
                        stringify!($name),
                        text,
                        [$($text),+].join(", ")
                    ))
                })
            }
        }
    };
}

pub(crate) use string_enum;

/// What every `string_enum!` enum does, for code generic over them (`dms_model::Reported`).
pub trait FixedText: Sized + Copy + 'static {
    fn parse_text(text: &str) -> Option<Self>;
    fn text(self) -> &'static str;
}

#[cfg(test)]
mod tests {
    string_enum! {
        enum Colour {
            /// Doc comments stay on their variant.
            Red => "red",
            LightBlue => "light-blue",
        }
    }

    #[test]
    fn each_text_is_its_variant_both_ways() {
        assert_eq!(Colour::ALL, [Colour::Red, Colour::LightBlue]);
        for colour in Colour::ALL {
            assert_eq!(Colour::parse(colour.as_str()), Some(colour));
            let json = serde_json::to_string(&colour).unwrap();
            assert_eq!(json, format!("\"{colour}\""));
            assert_eq!(serde_json::from_str::<Colour>(&json).unwrap(), colour);
        }
    }

    #[test]
    fn unknown_text_is_refused_with_the_accepted_values() {
        assert_eq!(Colour::parse("Red"), None);
        let err = serde_json::from_str::<Colour>("\"green\"").unwrap_err();
        assert!(
            err.to_string()
                .contains("unknown Colour `green`: expected one of red, light-blue"),
            "{err}"
        );
    }
}
