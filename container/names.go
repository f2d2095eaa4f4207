package container

import (
	"fmt"
	"math/rand/v2"
)

// randomName makes a container name as docker does: adjective_surname of a
// scientist or engineer, with a digit when asked (after collisions).
func randomName(digit bool) string {
	n := adjectives[rand.IntN(len(adjectives))] + "_" + surnames[rand.IntN(len(surnames))]
	if digit {
		n += fmt.Sprint(rand.IntN(10))
	}
	return n
}

var adjectives = []string{
	"admiring", "adoring", "affectionate", "agitated", "amazing", "angry", "awesome", "beautiful",
	"blissful", "bold", "boring", "brave", "busy", "charming", "clever", "compassionate",
	"competent", "condescending", "confident", "cool", "cranky", "crazy", "dazzling", "determined",
	"distracted", "dreamy", "eager", "ecstatic", "elastic", "elated", "elegant", "eloquent",
	"epic", "exciting", "fervent", "festive", "flamboyant", "focused", "friendly", "frosty",
	"funny", "gallant", "gifted", "goofy", "gracious", "great", "happy", "hardcore",
	"heuristic", "hopeful", "hungry", "infallible", "inspiring", "intelligent", "interesting", "jolly",
	"jovial", "keen", "kind", "laughing", "loving", "lucid", "magical", "modest",
	"musing", "mystifying", "naughty", "nervous", "nice", "nifty", "nostalgic", "objective",
	"optimistic", "peaceful", "pedantic", "pensive", "practical", "priceless", "quirky", "quizzical",
	"recursing", "relaxed", "reverent", "romantic", "sad", "serene", "sharp", "silly",
	"sleepy", "stoic", "strange", "stupefied", "suspicious", "sweet", "tender", "thirsty",
	"trusting", "unruffled", "upbeat", "vibrant", "vigilant", "vigorous", "wizardly", "wonderful",
	"xenodochial", "youthful", "zealous", "zen",
}

var surnames = []string{
	"agnesi", "albattani", "allen", "almeida", "archimedes", "ardinghelli", "babbage", "banach",
	"bardeen", "bartik", "bassi", "bell", "benz", "bhabha", "black", "blackwell",
	"bohr", "booth", "borg", "bose", "bouman", "brahmagupta", "brattain", "brown",
	"carson", "cerf", "chandrasekhar", "chatelet", "clarke", "cohen", "colden", "cori",
	"curie", "darwin", "davinci", "diffie", "dijkstra", "driscoll", "dubinsky", "easley",
	"edison", "einstein", "elion", "engelbart", "euclid", "euler", "faraday", "fermat",
	"fermi", "feynman", "franklin", "galileo", "gates", "goldberg", "goldstine", "goodall",
	"hamilton", "haslett", "hawking", "heisenberg", "hellman", "hermann", "hertz", "hodgkin",
	"hopper", "hypatia", "jackson", "jang", "jennings", "johnson", "kalam", "keldysh",
	"kepler", "khorana", "knuth", "kowalevski", "lalande", "lamarr", "lamport", "leakey",
	"leavitt", "lederberg", "lehmann", "lewin", "liskov", "lovelace", "lumiere", "mahavira",
	"margulis", "matsumoto", "maxwell", "mayer", "mccarthy", "mcclintock", "meitner", "mendel",
	"merkle", "mirzakhani", "morse", "napier", "nash", "neumann", "newton", "nobel",
	"noether", "noyce", "pascal", "pasteur", "payne", "perlman", "pike", "poincare",
	"ptolemy", "raman", "ramanujan", "ride", "ritchie", "rosalind", "sammet", "shannon",
	"shaw", "shockley", "sinoussi", "snyder", "stallman", "stonebraker", "swanson", "tesla",
	"thompson", "torvalds", "turing", "varahamihira", "visvesvaraya", "volhard", "wescoff", "wiles",
	"williams", "wilson", "wing", "wozniak", "wright", "yalow", "yonath", "zhukovsky",
}
