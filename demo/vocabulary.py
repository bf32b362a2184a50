"""The demo's world: names by language, countries, industries, titles, company sizes, and what a B2B
site and its campaigns are made of. Weights say how common each is."""

from __future__ import annotations

from leadflow.leads.db.models import ActivityType as A

# language: (first names, last names); "_" stands for a space inside a last name
NAMES: dict[str, tuple[list[str], list[str]]] = {
    "nl": (
        "Anna Sanne Lotte Eva Femke Iris Noor Maartje Bram Daan Joris Pieter Sem Thijs Jeroen "
        "Wouter Ruud Lieke".split(),
        "Jansen de_Vries van_Dijk Bakker Visser Smit Meijer de_Boer Mulder Bos Vos Peters "
        "Hendriks van_Leeuwen Dekker".split(),
    ),
    "da": (
        "Mette Freja Ida Sofie Karen Signe Søren Mads Rasmus Frederik Jens Lars Anders Mikkel Kasper Jørgen".split(),
        "Jensen Nielsen Hansen Pedersen Andersen Christensen Larsen Sørensen Rasmussen "
        "Jørgensen Madsen Kristensen".split(),
    ),
    "de": (
        "Lena Hannah Julia Katrin Sabine Jana Lukas Jonas Felix Tobias Stefan Jürgen Matthias Florian Andreas".split(),
        "Müller Schmidt Schneider Fischer Weber Meyer Wagner Becker Schulz Hoffmann Koch Richter Klein Wolf".split(),
    ),
    "en": (
        "Emma Olivia Sophie Grace Chloe Emily Sarah Jack Oliver Harry James Daniel Michael Ryan Thomas Ethan".split(),
        "Smith Jones Taylor Brown Williams Wilson Johnson Davies Robinson Wright Walker Clarke Hughes Miller".split(),
    ),
    "fr": (
        "Camille Léa Chloé Manon Hélène Claire Julie Lucas Hugo Louis Théo Nicolas Julien Antoine François".split(),
        "Martin Bernard Dubois Thomas Robert Richard Petit Durand Leroy Moreau Lefèvre Girard Lambert Fontaine".split(),
    ),
    "sv": (
        "Elin Maja Ebba Linnea Astrid Erik Lars Nils Oskar Gustav Johan Axel".split(),
        "Andersson Johansson Karlsson Nilsson Eriksson Larsson Olsson Persson Svensson Lindberg".split(),
    ),
}
Country = tuple[float, tuple[str, ...], str, tuple[tuple[str, float], ...]]
# country: (weight, name languages, domain TLD, timezones with weights)
COUNTRIES: dict[str, Country] = {
    "NL": (22, ("nl",), "nl", (("Europe/Amsterdam", 1),)),
    "DE": (16, ("de",), "de", (("Europe/Berlin", 1),)),
    "DK": (10, ("da",), "dk", (("Europe/Copenhagen", 1),)),
    "GB": (14, ("en",), "co.uk", (("Europe/London", 1),)),
    "US": (
        16,
        ("en",),
        "com",
        (("America/New_York", 5), ("America/Chicago", 3), ("America/Denver", 1), ("America/Los_Angeles", 3)),
    ),
    "FR": (9, ("fr",), "fr", (("Europe/Paris", 1),)),
    "BE": (7, ("nl", "fr"), "be", (("Europe/Brussels", 1),)),
    "SE": (6, ("sv",), "se", (("Europe/Stockholm", 1),)),
}
# industry: (weight, fit for the product, company-name suffixes)
INDUSTRIES: dict[str, tuple[float, float, tuple[str, ...]]] = {
    "software": (20, 1.0, ("Software", "Systems", "Labs", "Cloud", "Digital")),
    "finance": (11, 0.8, ("Capital", "Finance", "Bank", "Partners")),
    "manufacturing": (13, 0.75, ("Industries", "Manufacturing", "Machines", "Components")),
    "logistics": (10, 0.8, ("Logistics", "Freight", "Transport", "Shipping")),
    "healthcare": (9, 0.55, ("Health", "Medical", "Care", "Pharma")),
    "retail": (11, 0.6, ("Retail", "Stores", "Commerce", "Brands")),
    "education": (6, 0.3, ("Academy", "Learning", "Institute")),
    "media": (6, 0.5, ("Media", "Studios", "Publishing")),
    "government": (3, 0.25, ("Agency", "Services")),
    "non-profit": (3, 0.2, ("Foundation", "Trust")),
}
STEMS_A = (
    "Nord Zee Alp Bright Blue Kes Lin Vel Ost Wester Sol Hav Berg Stern Lumen Cor Aur Fal Riv Tand Acme Gro Kvik Hel"
).split()
STEMS_B = ("vik tra ex ora io holm dal mark gate field wood bridge stone works ly haven point line").split()
# Every "stem suffix" company name there is; past this many companies, names get a number.
PLAIN_NAMES = len({f"{a}{b} {s}" for a in STEMS_A for b in STEMS_B for v in INDUSTRIES.values() for s in v[2]})
# (title, seniority, weight): seniority drives fit, weight how common the title is
TITLES: list[tuple[str, float, float]] = [
    ("CEO", 1.0, 2),
    ("CTO", 0.95, 2),
    ("CMO", 0.95, 2),
    ("COO", 0.9, 1),
    ("VP Sales", 0.9, 2),
    ("VP Marketing", 0.9, 2),
    ("Head of Marketing", 0.8, 4),
    ("Head of Sales", 0.8, 3),
    ("Head of Operations", 0.75, 3),
    ("Marketing Director", 0.8, 3),
    ("Sales Director", 0.75, 3),
    ("Director of Demand Generation", 0.8, 2),
    ("Marketing Manager", 0.6, 10),
    ("Sales Manager", 0.55, 7),
    ("Operations Manager", 0.5, 5),
    ("Product Manager", 0.45, 5),
    ("Marketing Operations Specialist", 0.45, 4),
    ("Growth Marketer", 0.4, 4),
    ("Marketing Specialist", 0.35, 7),
    ("Account Executive", 0.3, 5),
    ("Consultant", 0.3, 4),
    ("Business Analyst", 0.3, 4),
    ("Data Analyst", 0.2, 3),
    ("Software Engineer", 0.15, 6),
    ("Office Manager", 0.15, 3),
    ("Recruiter", 0.05, 3),
    ("Intern", 0.02, 2),
]
# (low, high, weight): many small companies, few large ones
SIZE_BANDS = [(2, 10, 28), (11, 50, 30), (51, 200, 22), (201, 1000, 12), (1001, 5000, 6), (5001, 50000, 2)]
FREEMAIL = ["gmail.com", "gmail.com", "outlook.com", "hotmail.com", "yahoo.com", "icloud.com"]
COMPETITORS = [("FunnelForge", "funnelforge.io"), ("LeadPilot", "leadpilot.com"), ("Nurturly", "nurturly.io")]
UNIVERSITIES = {
    "NL": ("Rijnland University", "student.rijnland-uni.nl"),
    "DE": ("Hochschule Elbtal", "stud.hs-elbtal.de"),
    "DK": ("Øresund Business School", "student.oresund-bs.dk"),
    "GB": ("Pennine University", "pennine.ac.uk"),
    "US": ("Lakeshore State University", "lakeshore.edu"),
    "FR": ("École de Gestion Loire", "etu.egl.fr"),
    "BE": ("Hogeschool Schelde", "student.schelde.be"),
    "SE": ("Mälardal Tekniska", "stud.malardal-tek.se"),
}
BLOG = [
    "what-is-lead-scoring",
    "mql-vs-sql",
    "nurture-sequences-that-work",
    "b2b-email-benchmarks",
    "gdpr-for-marketers",
    "attribution-101",
]
CASES = ["logistics-scaleup", "regional-bank", "saas-pipeline", "factory-leads"]
CAMPAIGNS = ["newsletter-weekly", "product-update", "webinar-invite", "case-study-digest", "ebook-followup"]
UTM = ["linkedin", "google", "newsletter", "partner", "twitter"]
HAND_RAISE = [(A.demo_request, "demo-form"), (A.contact_sales, "contact-sales-form"), (A.quote_request, "quote-form")]
OFFICE_HOURS = (8, 9, 9, 10, 10, 11, 11, 12, 13, 14, 14, 15, 15, 16, 17)
