"""How often :func:`vsearch.encoders.language.looks_non_english` flags English and non-English queries.

    python benchmarks/language_check.py

English: the first docstring line of every scikit-image data loader (real captions) and 30
everyday photo queries and labels; the same 30 queries translated into German, French, Spanish
and Italian. Prints the share flagged per language; recorded in benchmarks/RESULTS.md.
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

QUERIES = {
    "en": ["a cat", "a dog on the beach", "a cup of coffee", "a rocket", "snow in the mountains", "a red car",
           "children playing in the park", "a birthday cake", "the old town at night", "a bicycle", "a man with a hat",
           "sunset over the sea", "a bowl of soup", "my grandmother in the garden", "a horse", "a city street in the rain",
           "two people hiking", "a boat on the lake", "flowers", "a wedding", "a plate of pasta", "a train station",
           "a black and white photo", "fireworks", "a baby sleeping", "a church", "autumn leaves", "a bridge",
           "a kitchen", "a cat sleeping on a sofa"],
    "de": ["eine Katze", "ein Hund am Strand", "eine Tasse Kaffee", "eine Rakete", "Schnee in den Bergen",
           "ein rotes Auto", "Kinder spielen im Park", "eine Geburtstagstorte", "die Altstadt bei Nacht", "ein Fahrrad",
           "ein Mann mit Hut", "Sonnenuntergang über dem Meer", "eine Schüssel Suppe", "meine Oma im Garten",
           "ein Pferd", "eine Straße im Regen", "zwei Leute beim Wandern", "ein Boot auf dem See", "Blumen",
           "eine Hochzeit", "ein Teller Nudeln", "ein Bahnhof", "ein Schwarzweißfoto", "Feuerwerk",
           "ein schlafendes Baby", "eine Kirche", "Herbstlaub", "eine Brücke", "eine Küche",
           "eine Katze schläft auf dem Sofa"],
    "fr": ["un chat", "un chien sur la plage", "une tasse de café", "une fusée", "la neige en montagne",
           "une voiture rouge", "des enfants qui jouent au parc", "un gâteau d'anniversaire", "la vieille ville la nuit",
           "un vélo", "un homme avec un chapeau", "coucher de soleil sur la mer", "un bol de soupe",
           "ma grand-mère dans le jardin", "un cheval", "une rue sous la pluie", "deux personnes en randonnée",
           "un bateau sur le lac", "des fleurs", "un mariage", "une assiette de pâtes", "une gare",
           "une photo en noir et blanc", "un feu d'artifice", "un bébé qui dort", "une église", "feuilles d'automne",
           "un pont", "une cuisine", "un chat qui dort sur le canapé"],
    "es": ["un gato", "un perro en la playa", "una taza de café", "un cohete", "nieve en las montañas",
           "un coche rojo", "niños jugando en el parque", "una tarta de cumpleaños", "el casco antiguo de noche",
           "una bicicleta", "un hombre con sombrero", "atardecer sobre el mar", "un plato de sopa",
           "mi abuela en el jardín", "un caballo", "una calle bajo la lluvia", "dos personas haciendo senderismo",
           "un barco en el lago", "flores", "una boda", "un plato de pasta", "una estación de tren",
           "una foto en blanco y negro", "fuegos artificiales", "un bebé durmiendo", "una iglesia", "hojas de otoño",
           "un puente", "una cocina", "un gato durmiendo en el sofá"],
    "it": ["un gatto", "un cane sulla spiaggia", "una tazza di caffè", "un razzo", "neve in montagna",
           "una macchina rossa", "bambini che giocano nel parco", "una torta di compleanno", "il centro storico di notte",
           "una bicicletta", "un uomo con il cappello", "tramonto sul mare", "una ciotola di zuppa",
           "mia nonna in giardino", "un cavallo", "una strada sotto la pioggia", "due persone in escursione",
           "una barca sul lago", "fiori", "un matrimonio", "un piatto di pasta", "una stazione",
           "una foto in bianco e nero", "fuochi d'artificio", "un bambino che dorme", "una chiesa", "foglie d'autunno",
           "un ponte", "una cucina", "un gatto che dorme sul divano"],
}
LABEL_SETS = {"en": ["cat,coffee,rocket", "cup,spoon,cat", "dog,beach,car"],
              "de": ["Katze,Kaffee,Rakete", "Tasse,Löffel,Katze", "Hund,Strand,Auto"]}


def skimage_captions() -> list[str]:
    from skimage import data

    return [getattr(data, n).__doc__.strip().splitlines()[0] for n in dir(data)
            if not n.startswith("_") and callable(getattr(data, n)) and getattr(data, n).__doc__]


def main() -> None:
    from vsearch.encoders.language import looks_non_english

    print("| texts | language | flagged as not English |")
    print("| --- | --- | ---: |")
    caps = skimage_captions()
    flagged = [c for c in caps if looks_non_english([c])]
    print(f"| scikit-image captions | en | {len(flagged)} / {len(caps)} |")
    for lang, queries in QUERIES.items():
        hits = [q for q in queries if looks_non_english([q])]
        print(f"| everyday queries | {lang} | {len(hits)} / {len(queries)} |")
    for lang, sets in LABEL_SETS.items():
        hits = [s for s in sets if looks_non_english(s.split(","))]
        print(f"| label sets | {lang} | {len(hits)} / {len(sets)} |")
    if flagged:
        print("\nEnglish captions flagged:", "; ".join(flagged))
    missed = {lang: [q for q in qs if not looks_non_english([q])] for lang, qs in QUERIES.items() if lang != "en"}
    print("\nMissed:", "; ".join(f"{lang}: {', '.join(qs)}" for lang, qs in missed.items() if qs))


if __name__ == "__main__":
    main()
